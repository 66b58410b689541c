//! Static Terragrunt / Terraform reference evaluation for one stack.
//!
//! Given a stack directory in a git tree, this module answers two questions without running
//! anything:
//!
//! 1. which upstream stacks does the stack depend on — its `dependency` and `dependencies` blocks,
//!    including those merged in from `include`d files — and
//! 2. which files and directories must trigger a re-plan of the stack when they change — included
//!    and read configs, files read by functions, the local `terraform { source }`, var files, and
//!    the transitive closure of local Terraform modules.
//!
//! Every answer carries the file and line that caused it, so a PR report can explain why a stack
//! is affected.
//!
//! Only the small, deterministic part of the Terragrunt expression language that paths are
//! written in is evaluated: string literals and templates, `get_terragrunt_dir()`,
//! `get_parent_terragrunt_dir()`, `path_relative_to_include()`, `find_in_parent_folders()`,
//! `get_repo_root()`, `dirname()`, trivial `format()`, `try()` and `local.X`. Anything that
//! depends on run time (`dependency.x.outputs`, `get_env()`, `run_cmd()`, values read out of
//! other configs, ...) is never guessed: the expression is dropped and reported as a [`Warning`]
//! naming the file, the line and the expression text, so an affected-stack computation can say
//! exactly where it is blind.
//!
//! The tree is read through a [`Tree`] (one revision), and work shared by many stacks (parsed
//! root and env configs, local module closures) is memoised in a [`ModuleCache`], so evaluating
//! 10,000 stacks in parallel parses each shared file once.
//!
//! The in-memory tree the unit tests use is a test double and exists only under `cfg(test)`;
//! the product build does not have it (this fails to compile, while [`Tree`](sluice_model::tree::Tree) is there):
//!
//! ```compile_fail
//! let _files = sluice_org::terragrunt::MemoryFiles::default();
//! ```
//!
//! ```
//! let _files: Option<&dyn sluice_model::tree::Tree> = None;
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use hcl_edit::Span;
use hcl_edit::expr::{Expression, FuncCall, ObjectKey, TraversalOperator};
use hcl_edit::structure::{Block, Body};
use hcl_edit::template::{Element, Strip, Template};
use hcl_edit::visit::{self, Visit};
use sluice_model::tree::Tree;

/// Rewrite a "… not found: PATH" warning when PATH (or a folder above it) is a symlink, so
/// the user learns the reference goes through a link sluice refuses to follow.
fn explain_symlink(repo: &dyn Tree, mut warning: Warning) -> Warning {
    if let Some((_, path)) = warning.message.rsplit_once(" not found: ") {
        let path = path.trim_end_matches('/');
        let link = std::iter::once(path)
            .chain(sluice_model::path::ancestors(path))
            .take_while(|p| !p.is_empty())
            .find(|p| repo.is_symlink(p));
        if let Some(link) = link {
            warning.message = format!(
                "{path} is reached through the symlink {link}, which sluice never follows (symlinks may lead outside the repository)"
            );
        }
    }
    warning
}

/// Why a path is an input of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A config file merged in by an `include` block.
    Include,
    /// A file read while evaluating the config: `read_terragrunt_config()`, `file()`,
    /// `templatefile()`, `read_tfvars_file()`, `sops_decrypt_file()`, `mark_as_read()`, ...
    Read,
    /// The local directory of `terraform { source }`.
    Source,
    /// A local Terraform module directory (`module { source = "./..." }`), transitively.
    Module,
    /// A var file passed through `extra_arguments`.
    VarFile,
}

/// An edge to an upstream stack whose outputs (or apply order) this stack depends on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    /// The `dependency` block label; `None` for `dependencies { paths }`.
    pub name: Option<String>,
    /// Repo-relative directory of the upstream stack.
    pub dir: String,
    /// The file that declared the edge (the stack's config or an included file).
    pub file: String,
    pub line: u32,
}

/// A file or directory whose change must re-plan the stack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeInput {
    pub kind: InputKind,
    /// Repo-relative file or directory. A directory stands for everything under it.
    pub path: String,
    pub is_dir: bool,
    /// The file that referenced it.
    pub via: String,
    pub line: u32,
}

/// Something the evaluator could not decide statically, or a reference to something missing
/// (shared with the Kustomize reader, hence defined in sluice-model).
pub use sluice_model::tree::Warning;

/// What one stack references. Sorted and deduplicated.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StackRefs {
    /// Sorted by `dir`, one per directory.
    pub dependencies: Vec<Dependency>,
    /// Sorted by `(path, kind)`, one per pair. The stack directory itself is not listed.
    pub inputs: Vec<ChangeInput>,
    pub warnings: Vec<Warning>,
}

/// An HCL syntax error (or undecodable file) with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct HclError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Just parses HCL and reports a syntax error with its position.
pub fn check_syntax(file: &str, src: &str) -> Result<(), HclError> {
    parse_hcl(file, src).map(|_| ())
}

/// Whether one Terraform/OpenTofu file (`*.tf`, `*.tofu`) configures where state lives: a
/// `backend` or `cloud` block inside a `terraform` block. Without one in any of a stack's files
/// the engine keeps local state in the working copy, so a fresh checkout plans against empty
/// state.
pub fn declares_backend(file: &str, src: &str) -> Result<bool, HclError> {
    let body = parse_hcl(file, src)?;
    Ok(body.get_blocks("terraform").any(|t| {
        t.body
            .blocks()
            .any(|b| matches!(b.ident.as_str(), "backend" | "cloud"))
    }))
}

/// Evaluates one stack directory (it contains `terragrunt.hcl` and/or `*.tf`, `*.tf.json`,
/// `*.tofu`).
///
/// Only a syntax error in the stack's own `terragrunt.hcl` is an error; everything else that
/// cannot be decided (unresolvable expressions, missing or broken referenced files) is reported
/// in [`StackRefs::warnings`] and the reference dropped.
pub fn evaluate_stack(
    stack_dir: &str,
    files: &dyn Tree,
    cache: &ModuleCache,
) -> Result<StackRefs, HclError> {
    let Some(stack_dir) = normalize(stack_dir) else {
        return Ok(StackRefs {
            warnings: vec![Warning {
                file: stack_dir.to_owned(),
                line: 1,
                col: 1,
                message: "path escapes the repository: stack directory".to_owned(),
            }],
            ..StackRefs::default()
        });
    };
    let mut eval = StackEval {
        repo: files,
        cache,
        stack_dir: stack_dir.clone(),
        refs: StackRefs::default(),
        module_roots: vec![stack_dir.clone()],
        reads_seen: HashSet::new(),
    };

    let config_path = join(&stack_dir, STACK_CONFIG);
    if let Some(bytes) = files.read(&config_path) {
        let config = HclFile::parse(&config_path, &bytes)?;
        eval.stack_config(&config);
    }

    // Terragrunt copies the stack directory over the module, so the stack's own .tf files and
    // every local module source are closed over the same way.
    let roots = std::mem::take(&mut eval.module_roots);
    let mut seen = HashSet::new();
    for root in roots {
        if !seen.insert(root.clone()) {
            continue;
        }
        let closure = cache.module_closure(files, &root);
        eval.refs.inputs.extend(closure.inputs.iter().cloned());
        eval.refs.warnings.extend(closure.warnings.iter().cloned());
    }

    Ok(eval.finish())
}

/// Memoises work shared between stacks of one revision: parsed included/read config files, the
/// local modules each directory references, and each directory's transitive module closure.
///
/// A cache is valid for one [`Tree`] (one revision); use a new one per revision. It is
/// `Sync`: stacks are evaluated in parallel.
#[derive(Default)]
pub struct ModuleCache {
    configs: RwLock<HashMap<String, Arc<Loaded>>>,
    dir_modules: RwLock<HashMap<String, Arc<DirModules>>>,
    closures: RwLock<HashMap<String, Arc<Closure>>>,
}

impl ModuleCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parsed config file (included or read by many stacks).
    fn config(&self, repo: &dyn Tree, path: &str) -> Arc<Loaded> {
        memoised(&self.configs, path, || match repo.read(path) {
            None => Loaded::Missing,
            Some(bytes) => match HclFile::parse(path, &bytes) {
                Ok(file) => Loaded::Parsed(file),
                Err(err) => Loaded::Invalid(err),
            },
        })
    }

    fn dir_modules(&self, repo: &dyn Tree, dir: &str) -> Arc<DirModules> {
        memoised(&self.dir_modules, dir, || scan_module_dir(repo, dir))
    }

    /// Every local module reachable from the Terraform files in `root` (not `root` itself).
    fn module_closure(&self, repo: &dyn Tree, root: &str) -> Arc<Closure> {
        memoised(&self.closures, root, || {
            // Breadth-first over the per-directory edges; cycles (which Terraform rejects, but a
            // broken tree may contain) end at the `seen` set.
            let mut closure = Closure::default();
            let mut seen = HashSet::from([root.to_owned()]);
            let mut queue = VecDeque::from([root.to_owned()]);
            while let Some(dir) = queue.pop_front() {
                let modules = self.dir_modules(repo, &dir);
                closure.warnings.extend(modules.warnings.iter().cloned());
                for edge in &modules.edges {
                    closure.inputs.push(ChangeInput {
                        kind: InputKind::Module,
                        path: edge.dir.clone(),
                        is_dir: true,
                        via: edge.via.clone(),
                        line: edge.line,
                    });
                    if seen.insert(edge.dir.clone()) {
                        queue.push_back(edge.dir.clone());
                    }
                }
            }
            closure
        })
    }
}

/// Looks `key` up, computing it outside the lock on a miss. Two threads may compute the same
/// entry at once; the result is identical, so the first insert wins and nothing waits on a parse.
fn memoised<T>(
    map: &RwLock<HashMap<String, Arc<T>>>,
    key: &str,
    compute: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some(hit) = map.read().unwrap_or_else(PoisonError::into_inner).get(key) {
        return Arc::clone(hit);
    }
    let value = Arc::new(compute());
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(map.entry(key.to_owned()).or_insert(value))
}

enum Loaded {
    Missing,
    Invalid(HclError),
    Parsed(HclFile),
}

#[derive(Default)]
struct DirModules {
    edges: Vec<ModuleEdge>,
    warnings: Vec<Warning>,
}

struct ModuleEdge {
    dir: String,
    via: String,
    line: u32,
}

#[derive(Default)]
struct Closure {
    inputs: Vec<ChangeInput>,
    warnings: Vec<Warning>,
}

const STACK_CONFIG: &str = "terragrunt.hcl";
const STACK_CONFIG_JSON: &str = "terragrunt.hcl.json";

// ---------------------------------------------------------------------------------------------
// Parsed files and positions
// ---------------------------------------------------------------------------------------------

/// One parsed HCL file with what is needed to turn byte spans into positions and source text.
struct HclFile {
    path: String,
    src: String,
    body: Body,
    line_starts: Vec<usize>,
}

impl HclFile {
    fn parse(path: &str, bytes: &[u8]) -> Result<HclFile, HclError> {
        let src = match std::str::from_utf8(bytes) {
            Ok(src) => src,
            Err(err) => {
                // Point at the first undecodable byte, as an editor would.
                let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
                let (line, col) = position(valid, &line_starts(valid), valid.len());
                return Err(HclError {
                    file: path.to_owned(),
                    line,
                    col,
                    message: "file is not valid UTF-8".to_owned(),
                });
            }
        };
        // A BOM is not HCL; editors on Windows add one.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let body = parse_hcl(path, src)?;
        Ok(HclFile {
            path: path.to_owned(),
            line_starts: line_starts(src),
            src: src.to_owned(),
            body,
        })
    }

    fn dir(&self) -> &str {
        parent(&self.path).unwrap_or("")
    }

    fn line(&self, span: Option<Range<usize>>) -> u32 {
        self.position(span).0
    }

    fn position(&self, span: Option<Range<usize>>) -> (u32, u32) {
        span.map_or((1, 1), |span| {
            position(&self.src, &self.line_starts, span.start)
        })
    }

    /// The source text of a span for a message: on one line, and cut short, because a warning
    /// must stay readable in a PR comment even when the expression is a 40-line conditional.
    fn text(&self, span: Option<Range<usize>>) -> String {
        const MAX_CHARS: usize = 160;
        let text = span
            .and_then(|span| self.src.get(span))
            .unwrap_or("<expression>");
        let mut one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some((cut, _)) = one_line.char_indices().nth(MAX_CHARS) {
            one_line.truncate(cut);
            one_line.push('…');
        }
        one_line
    }

    fn warning(&self, span: Option<Range<usize>>, message: String) -> Warning {
        let (line, col) = self.position(span);
        Warning {
            file: self.path.clone(),
            line,
            col,
            message,
        }
    }

    /// The expression of `local.<name>` from any `locals` block of this file.
    fn local(&self, name: &str) -> Option<&Expression> {
        self.body
            .get_blocks("locals")
            .find_map(|block| block.body.get_attribute(name))
            .map(|attr| &attr.value)
    }
}

/// Larger HCL files are refused: the parser's time grows faster than linearly with the size
/// of object literals (a 512 KiB `inputs` map takes seconds), and no real Terragrunt or
/// Terraform file comes close.
pub const MAX_HCL_BYTES: usize = 512 * 1024;

fn parse_hcl(file: &str, src: &str) -> Result<Body, HclError> {
    if src.len() > MAX_HCL_BYTES {
        return Err(HclError {
            file: file.to_owned(),
            line: 1,
            col: 1,
            message: format!(
                "file is {} bytes, over the {} KiB limit for HCL files; not parsed",
                src.len(),
                MAX_HCL_BYTES / 1024
            ),
        });
    }
    hcl_edit::parser::parse_body(src).map_err(|err| {
        let location = err.location();
        HclError {
            file: file.to_owned(),
            line: to_u32(location.line()),
            col: to_u32(location.column()),
            message: err.message().to_owned(),
        }
    })
}

fn line_starts(src: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// 1-based line and column (in characters, like hcl-edit's own error locations).
fn position(src: &str, line_starts: &[usize], offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let index = line_starts.partition_point(|&start| start <= offset).max(1) - 1;
    let start = line_starts[index];
    let col = src
        .get(start..offset)
        .map_or(offset - start, |s| s.chars().count());
    (to_u32(index + 1), to_u32(col + 1))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Resolves `.`, `..` and empty components of a repo-relative path. A leading `/` means the
/// repository root. `None` when the path climbs above the root.
///
/// The result has no `.`/`..`/empty components and no leading or trailing `/`; `""` is the root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        rel.to_owned()
    } else {
        format!("{dir}/{rel}")
    }
}

/// The parent of a normalized path; `None` for the root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind('/').map_or("", |i| &path[..i]))
}

/// `filepath.Rel` for two normalized repo paths.
fn relative_path(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let parts: Vec<&str> = std::iter::repeat_n("..", from.len() - common)
        .chain(to[common..].iter().copied())
        .collect();
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// Go's `filepath.Clean` for paths that are not anchored at the repository.
fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir`: everything up to the last separator, cleaned.
fn go_dir(path: &str) -> String {
    clean(path.rfind('/').map_or("", |i| &path[..=i]))
}

/// Go's `filepath.Base`: the last element, ignoring trailing separators.
fn go_base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" }.to_owned();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

// ---------------------------------------------------------------------------------------------
// Expression evaluation
// ---------------------------------------------------------------------------------------------

/// Marks "the repository root" inside an evaluated string. Terragrunt's path functions return
/// absolute paths whose prefix depends on where the repository is checked out; the marker keeps
/// them exact without knowing that prefix. NUL is never part of a real path, and literals that
/// spell one (`"\u0000"`) are refused, so a marker always comes from a function.
const ROOT: char = '\0';

fn rooted(repo_path: &str) -> Value {
    Value::Str(format!("{ROOT}/{repo_path}"))
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    List(Vec<Value>),
}

enum EvalError {
    /// Only known at run time, or outside the supported subset; the span is the culprit.
    Dynamic(Option<Range<usize>>),
    /// Statically known to fail (a file that is not there, an ambiguous include, ...).
    Fails(String),
}

type Eval = Result<Value, EvalError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MergeStrategy {
    Shallow,
    Deep,
    NoMerge,
}

/// One `include` block of the stack config, resolved.
struct IncludeRef {
    /// The block label; `""` for the bare `include { }`.
    name: String,
    dir: String,
    merge: MergeStrategy,
    config: Arc<Loaded>,
}

/// `each.key`, `each.value`, `count.index` of a `dependency` block's `expansion`.
#[derive(Debug, Default, Clone)]
struct IterVars {
    key: Option<String>,
    value: Option<String>,
    index: Option<String>,
}

/// Everything an expression can see: the file it is in (for `local.X` and positions) and the
/// Terragrunt context that the path functions answer from.
struct Scope<'a> {
    repo: &'a dyn Tree,
    file: &'a HclFile,
    /// `get_terragrunt_dir()`: the including stack for included files, the read file's own
    /// directory for `read_terragrunt_config` targets. Relative paths resolve against it.
    terragrunt_dir: &'a str,
    /// `get_original_terragrunt_dir()`: always the stack being evaluated.
    original_dir: &'a str,
    /// Set while evaluating an included file: `get_parent_terragrunt_dir()` and
    /// `path_relative_to_include()` then refer to that include, whatever their argument.
    current_include: Option<&'a IncludeRef>,
    /// The stack config's includes, selected by name from the stack config itself.
    includes: &'a [IncludeRef],
    iter: Option<&'a IterVars>,
    locals_in_progress: RefCell<Vec<String>>,
}

impl<'a> Scope<'a> {
    fn new(repo: &'a dyn Tree, file: &'a HclFile, terragrunt_dir: &'a str) -> Self {
        Scope {
            repo,
            file,
            terragrunt_dir,
            original_dir: terragrunt_dir,
            current_include: None,
            includes: &[],
            iter: None,
            locals_in_progress: RefCell::new(Vec::new()),
        }
    }

    fn with_iter(&self, iter: &'a IterVars) -> Scope<'a> {
        Scope {
            iter: Some(iter),
            locals_in_progress: RefCell::new(Vec::new()),
            ..*self
        }
    }

    fn eval(&self, expr: &Expression) -> Eval {
        match expr {
            Expression::String(s) if !s.contains(ROOT) => Ok(Value::Str(s.value().clone())),
            Expression::Number(n) => Ok(Value::Str(n.value().to_string())),
            Expression::StringTemplate(t) => self.eval_template(t),
            Expression::Parenthesis(p) => self.eval(p.inner()),
            Expression::Array(items) => items
                .iter()
                .map(|item| self.eval(item))
                .collect::<Result<_, _>>()
                .map(Value::List),
            Expression::Traversal(t) => {
                let name = match (&t.expr, t.operators.as_slice()) {
                    (Expression::Variable(root), [op]) => match op.value() {
                        TraversalOperator::GetAttr(attr) => Some((root.as_str(), attr.as_str())),
                        _ => None,
                    },
                    _ => None,
                };
                match name {
                    Some(("local", local)) => self.eval_local(local, t.span()),
                    Some(var) => self.iter_var(var).ok_or(EvalError::Dynamic(t.span())),
                    None => Err(EvalError::Dynamic(t.span())),
                }
            }
            Expression::FuncCall(call) => self.eval_call(call),
            other => Err(EvalError::Dynamic(other.span())),
        }
    }

    fn iter_var(&self, (root, attr): (&str, &str)) -> Option<Value> {
        let iter = self.iter?;
        let value = match (root, attr) {
            ("each", "key") => iter.key.as_ref(),
            ("each", "value") => iter.value.as_ref(),
            ("count", "index") => iter.index.as_ref(),
            _ => None,
        };
        value.map(|v| Value::Str(v.clone()))
    }

    fn eval_local(&self, name: &str, span: Option<Range<usize>>) -> Eval {
        let Some(expr) = self.file.local(name) else {
            return Err(EvalError::Fails(format!(
                "local.{name} is not defined in {}",
                self.file.path
            )));
        };
        if self.locals_in_progress.borrow().iter().any(|n| n == name) {
            return Err(EvalError::Fails(format!("local.{name} refers to itself")));
        }
        self.locals_in_progress.borrow_mut().push(name.to_owned());
        let value = self.eval(expr);
        self.locals_in_progress.borrow_mut().pop();
        // A local that is not a path (an object, a read config) is the caller's culprit.
        value.map_err(|err| match err {
            EvalError::Dynamic(None) => EvalError::Dynamic(span),
            err => err,
        })
    }

    fn eval_template(&self, template: &Template) -> Eval {
        let mut out = String::new();
        for element in template.iter() {
            match element {
                Element::Literal(literal) if !literal.contains(ROOT) => {
                    out.push_str(literal.value());
                }
                Element::Interpolation(interp) if interp.strip == Strip::None => {
                    match self.eval(&interp.expr)? {
                        Value::Str(s) => out.push_str(&s),
                        Value::List(_) => return Err(EvalError::Dynamic(interp.expr.span())),
                    }
                }
                // Whitespace stripping and directives never appear in real paths; not worth
                // evaluating half-right.
                other => return Err(EvalError::Dynamic(other.span())),
            }
        }
        Ok(Value::Str(out))
    }

    /// A string that must not carry a root marker (a file name, an include name, ...).
    fn eval_plain(&self, expr: &Expression) -> Result<String, EvalError> {
        match self.eval(expr)? {
            Value::Str(s) if !s.contains(ROOT) => Ok(s),
            _ => Err(EvalError::Dynamic(expr.span())),
        }
    }

    fn eval_call(&self, call: &FuncCall) -> Eval {
        let dynamic = || EvalError::Dynamic(call.span());
        if call.name.is_namespaced() || call.args.expand_final() {
            return Err(dynamic());
        }
        let args: Vec<&Expression> = call.args.iter().collect();
        let name = call.name.name.as_str();
        match (name, args.as_slice()) {
            ("get_terragrunt_dir", []) => Ok(rooted(self.terragrunt_dir)),
            ("get_original_terragrunt_dir", []) => Ok(rooted(self.original_dir)),
            ("get_repo_root", []) => Ok(rooted("")),
            ("get_path_to_repo_root", []) => Ok(Value::Str(relative_path(self.terragrunt_dir, ""))),
            ("get_path_from_repo_root", []) => {
                Ok(Value::Str(relative_path("", self.terragrunt_dir)))
            }
            ("get_parent_terragrunt_dir", [] | [_]) => {
                let dir = self
                    .selected_include(&args)?
                    .map_or(self.terragrunt_dir, |include| include.dir.as_str());
                Ok(rooted(dir))
            }
            ("path_relative_to_include", [] | [_]) => {
                let rel = self.selected_include(&args)?.map_or_else(
                    || ".".to_owned(),
                    |include| relative_path(&include.dir, self.terragrunt_dir),
                );
                Ok(Value::Str(rel))
            }
            ("path_relative_from_include", [] | [_]) => {
                let rel = self.selected_include(&args)?.map_or_else(
                    || ".".to_owned(),
                    |include| relative_path(self.terragrunt_dir, &include.dir),
                );
                Ok(Value::Str(rel))
            }
            ("find_in_parent_folders", [] | [_] | [_, _]) => self.find_in_parent_folders(&args),
            ("dirname", [arg]) => self.dirname(arg),
            ("basename", [arg]) => match self.eval(arg)? {
                Value::Str(s) if !s.contains(ROOT) => Ok(Value::Str(go_base(&s))),
                // The base name of the repository root is the checkout directory's name.
                Value::Str(s) if s.starts_with(ROOT) && !s[1..].contains(ROOT) => {
                    match go_base(&s[1..]) {
                        base if base == "/" => Err(dynamic()),
                        base => Ok(Value::Str(base)),
                    }
                }
                _ => Err(EvalError::Dynamic(arg.span())),
            },
            ("abspath", [arg]) => match self.eval(arg)? {
                Value::Str(s) if s.starts_with(ROOT) && !s[1..].contains(ROOT) => {
                    normalize(&s[1..]).map(|p| rooted(&p)).ok_or_else(|| {
                        EvalError::Fails("abspath: path escapes the repository".to_owned())
                    })
                }
                // Relative to the process's working directory: not static.
                _ => Err(dynamic()),
            },
            ("format", [fmt, rest @ ..]) => self.format(call, fmt, rest),
            // Returns its argument; the read itself is recorded by `StackEval::reads`.
            ("mark_as_read", [arg]) => self.eval(arg),
            ("try", [_, ..]) => {
                // try() returns the first argument that evaluates without error. A statically
                // failing argument is skipped as it would be at run time; a dynamic one decides
                // at run time, so we cannot look past it.
                let mut failures = Vec::new();
                for arg in &args {
                    match self.eval(arg) {
                        Ok(value) => return Ok(value),
                        Err(EvalError::Fails(msg)) => failures.push(msg),
                        Err(dynamic) => return Err(dynamic),
                    }
                }
                Err(EvalError::Fails(format!(
                    "try: no argument succeeds ({})",
                    failures.join("; ")
                )))
            }
            _ => Err(dynamic()),
        }
    }

    /// The include `get_parent_terragrunt_dir()` / `path_relative_to_include()` refer to;
    /// `None` when the config has no include (both then answer for the config itself).
    fn selected_include(&self, args: &[&Expression]) -> Result<Option<&'a IncludeRef>, EvalError> {
        if let Some(include) = self.current_include {
            return Ok(Some(include));
        }
        match args.first() {
            None => match self.includes {
                [] => Ok(None),
                [only] => Ok(Some(only)),
                many => Err(EvalError::Fails(format!(
                    "the config has {} include blocks; name the one you mean",
                    many.len()
                ))),
            },
            Some(arg) => {
                let name = self.eval_plain(arg)?;
                self.includes
                    .iter()
                    .find(|include| include.name == name)
                    .map(Some)
                    .ok_or_else(|| EvalError::Fails(format!("no include block named \"{name}\"")))
            }
        }
    }

    /// Terragrunt's `find_in_parent_folders`: starts in the parent of the directory of the
    /// config being evaluated (the including stack for included files) and walks up; the first
    /// existing path wins. The walk stops at the repository root: anything above is not in the
    /// tree we plan from.
    fn find_in_parent_folders(&self, args: &[&Expression]) -> Eval {
        let names = match args.first() {
            Some(arg) => vec![self.eval_plain(arg)?],
            None => vec![STACK_CONFIG_JSON.to_owned(), STACK_CONFIG.to_owned()],
        };
        let mut dir = parent(self.terragrunt_dir);
        while let Some(current) = dir {
            for name in &names {
                if let Some(candidate) = normalize(&join(current, name))
                    && (self.repo.is_file(&candidate) || self.repo.is_dir(&candidate))
                {
                    return Ok(rooted(&candidate));
                }
            }
            dir = parent(current);
        }
        match args.get(1) {
            Some(fallback) => self.eval(fallback),
            None => Err(EvalError::Fails(format!(
                "find_in_parent_folders: no `{}` in any parent folder of `{}` inside the repository",
                names.last().map_or("", String::as_str),
                display_dir(self.terragrunt_dir),
            ))),
        }
    }

    fn dirname(&self, arg: &Expression) -> Eval {
        match self.eval(arg)? {
            Value::Str(s) if !s.contains(ROOT) => Ok(Value::Str(go_dir(&s))),
            Value::Str(s) if s.starts_with(ROOT) && !s[1..].contains(ROOT) => {
                // Resolve before cutting so that climbing above the root is caught, not clamped.
                let path = &s[1..];
                let prefix = path.rfind('/').map_or("", |i| &path[..=i]);
                normalize(prefix).map(|p| rooted(&p)).ok_or_else(|| {
                    EvalError::Fails("dirname: path escapes the repository".to_owned())
                })
            }
            _ => Err(EvalError::Dynamic(arg.span())),
        }
    }

    /// `format()` with `%s` and `%%` only: enough for path building, nothing to get wrong.
    fn format(&self, call: &FuncCall, fmt: &Expression, args: &[&Expression]) -> Eval {
        let fmt = self.eval_plain(fmt)?;
        let mut out = String::new();
        let mut args = args.iter();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('s') => {
                    let arg = args.next().ok_or(EvalError::Dynamic(call.span()))?;
                    match self.eval(arg)? {
                        Value::Str(s) => out.push_str(&s),
                        Value::List(_) => return Err(EvalError::Dynamic(arg.span())),
                    }
                }
                _ => return Err(EvalError::Dynamic(call.span())),
            }
        }
        if args.next().is_some() {
            return Err(EvalError::Dynamic(call.span()));
        }
        Ok(Value::Str(out))
    }

    /// Turns an evaluated string into a repo path: root-anchored strings as they are, relative
    /// ones against `get_terragrunt_dir()`.
    fn resolve(&self, value: &str) -> Result<String, PathError> {
        let (base, rel) = match value.strip_prefix(ROOT) {
            Some(rest) => ("", rest),
            None => (self.terragrunt_dir, value),
        };
        if rel.contains(ROOT) {
            // e.g. "x/${get_terragrunt_dir()}": depends on where the repository is checked out.
            return Err(PathError::Dynamic);
        }
        if base == self.terragrunt_dir
            && (rel.starts_with('/')
                || rel.starts_with('~')
                || rel.starts_with('\\')
                || has_drive(rel))
        {
            return Err(PathError::Absolute);
        }
        normalize(&join(base, rel)).ok_or(PathError::Escapes)
    }

    /// Evaluates a path expression to one repo path, or the warning explaining why not.
    fn path(&self, expr: &Expression) -> PathResult {
        match self.eval(expr) {
            Ok(Value::Str(s)) => self.resolve(&s).map_err(|err| self.path_warning(expr, err)),
            Ok(Value::List(_)) => Err(self.eval_warning(expr, EvalError::Dynamic(expr.span()))),
            Err(err) => Err(self.eval_warning(expr, err)),
        }
    }

    /// Evaluates a list of paths (`paths = [...]`, `required_var_files = [...]`). Each element
    /// of a literal list succeeds or warns on its own.
    fn paths(&self, expr: &Expression) -> Vec<(PathResult, Option<Range<usize>>)> {
        if let Expression::Array(items) = expr {
            return items
                .iter()
                .map(|item| (self.path(item), item.span()))
                .collect();
        }
        match self.eval(expr) {
            Ok(Value::List(values)) => values
                .iter()
                .map(|value| match value {
                    Value::Str(s) => self.resolve(s).map_err(|err| self.path_warning(expr, err)),
                    Value::List(_) => Err(self.eval_warning(expr, EvalError::Dynamic(expr.span()))),
                })
                .map(|result| (result, expr.span()))
                .collect(),
            Ok(Value::Str(s)) => vec![(
                self.resolve(&s).map_err(|err| self.path_warning(expr, err)),
                expr.span(),
            )],
            Err(err) => vec![(Err(self.eval_warning(expr, err)), expr.span())],
        }
    }

    fn eval_warning(&self, expr: &Expression, err: EvalError) -> Warning {
        let whole = self.file.text(expr.span());
        let message = match err {
            EvalError::Dynamic(culprit) => {
                let known = culprit.is_some();
                let part = self.file.text(culprit);
                if part == whole || !known {
                    format!("cannot resolve path statically: {whole}")
                } else {
                    format!("cannot resolve path statically: {whole} ({part} is not static)")
                }
            }
            EvalError::Fails(message) => format!("{message} (in {whole})"),
        };
        self.file.warning(expr.span(), message)
    }

    fn path_warning(&self, expr: &Expression, err: PathError) -> Warning {
        let whole = self.file.text(expr.span());
        let message = match err {
            PathError::Dynamic => format!("cannot resolve path statically: {whole}"),
            PathError::Absolute => {
                format!("path escapes the repository: {whole} is an absolute path")
            }
            PathError::Escapes => format!("path escapes the repository: {whole}"),
        };
        self.file.warning(expr.span(), message)
    }
}

/// One resolved path, or the warning explaining why there is none.
type PathResult = Result<String, Warning>;

enum PathError {
    Dynamic,
    Absolute,
    Escapes,
}

fn has_drive(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn display_dir(dir: &str) -> &str {
    if dir.is_empty() { "." } else { dir }
}

/// The literal text an expression starts with (`"git::https://...${x}"` → `git::https://...`):
/// enough to recognise remote sources and `-var-file` flags without evaluating the rest.
fn leading_literal(expr: &Expression) -> &str {
    match expr {
        Expression::String(s) => s.value(),
        Expression::StringTemplate(t) => match t.iter().next() {
            Some(Element::Literal(literal)) => literal.value(),
            _ => "",
        },
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Stack evaluation
// ---------------------------------------------------------------------------------------------

/// Function calls whose path argument is a file the config reads while it is evaluated.
const READ_FUNCTIONS: &[&str] = &[
    "read_terragrunt_config",
    "file",
    "templatefile",
    "filebase64",
    "filemd5",
    "filesha1",
    "filesha256",
    "filesha512",
    "filebase64sha256",
    "filebase64sha512",
    "fileexists",
    "fileset",
    "read_tfvars_file",
    "sops_decrypt_file",
    "mark_as_read",
];

struct StackEval<'a> {
    repo: &'a dyn Tree,
    cache: &'a ModuleCache,
    stack_dir: String,
    refs: StackRefs,
    /// Directories whose Terraform files are closed over for local modules.
    module_roots: Vec<String>,
    reads_seen: HashSet<String>,
}

/// A config merged into the stack: an included file or the stack config itself (last, so it
/// overrides).
struct Fragment<'a> {
    scope: Scope<'a>,
    merge: MergeStrategy,
}

impl StackEval<'_> {
    fn warn(&mut self, warning: Warning) {
        let warning = explain_symlink(self.repo, warning);
        self.refs.warnings.push(warning);
    }

    fn input(&mut self, kind: InputKind, path: String, is_dir: bool, via: &HclFile, line: u32) {
        self.refs.inputs.push(ChangeInput {
            kind,
            path,
            is_dir,
            via: via.path.clone(),
            line,
        });
    }

    fn stack_config(&mut self, config: &HclFile) {
        let stack_dir = self.stack_dir.clone();
        let includes = self.includes(config, &stack_dir);

        let mut fragments: Vec<Fragment<'_>> = Vec::new();
        for include in &includes {
            let Loaded::Parsed(file) = include.config.as_ref() else {
                continue;
            };
            fragments.push(Fragment {
                scope: Scope {
                    current_include: Some(include),
                    includes: &includes,
                    ..Scope::new(self.repo, file, &stack_dir)
                },
                merge: include.merge,
            });
        }
        fragments.push(Fragment {
            scope: Scope {
                includes: &includes,
                ..Scope::new(self.repo, config, &stack_dir)
            },
            merge: MergeStrategy::Shallow,
        });

        for fragment in &fragments[..fragments.len() - 1] {
            for block in fragment.scope.file.body.get_blocks("include") {
                let warning = fragment.scope.file.warning(
                    block.span(),
                    "nested include is not followed: Terragrunt merges only one level of include"
                        .to_owned(),
                );
                self.warn(warning);
            }
        }
        // Every included file is parsed by Terragrunt, merged or not, so its reads count.
        for fragment in &fragments {
            self.reads(&fragment.scope);
        }

        let merged: Vec<&Fragment<'_>> = fragments
            .iter()
            .filter(|fragment| fragment.merge != MergeStrategy::NoMerge)
            .collect();
        self.dependency_blocks(&merged);
        self.dependencies_block(&merged);
        self.terraform_block(&merged);
    }

    /// Resolves the stack config's `include` blocks and records them as inputs.
    fn includes(&mut self, config: &HclFile, stack_dir: &str) -> Vec<IncludeRef> {
        let scope = Scope::new(self.repo, config, stack_dir);
        let mut includes = Vec::new();
        for block in config.body.get_blocks("include") {
            let name = match block.labels.as_slice() {
                [] => String::new(),
                [label] => label.as_str().to_owned(),
                _ => {
                    self.warn(config.warning(
                        block.span(),
                        "include block with more than one label is ignored".to_owned(),
                    ));
                    continue;
                }
            };
            let Some(attr) = block.body.get_attribute("path") else {
                self.warn(config.warning(block.span(), "include block without path".to_owned()));
                continue;
            };
            let path = match scope.path(&attr.value) {
                Ok(path) => path,
                Err(warning) => {
                    self.warn(warning);
                    continue;
                }
            };
            let line = config.line(attr.value.span());
            self.input(InputKind::Include, path.clone(), false, config, line);
            let loaded = self.cache.config(self.repo, &path);
            self.check_loaded(&loaded, config, attr.value.span(), "included file", &path);
            let merge = match block.body.get_attribute("merge_strategy") {
                None => MergeStrategy::Shallow,
                Some(attr) => match attr.value.as_str() {
                    Some("shallow") => MergeStrategy::Shallow,
                    Some("deep") => MergeStrategy::Deep,
                    Some("no_merge") => MergeStrategy::NoMerge,
                    _ => {
                        self.warn(config.warning(
                            attr.value.span(),
                            format!(
                                "cannot resolve merge_strategy statically: {}; assuming \"shallow\"",
                                config.text(attr.value.span())
                            ),
                        ));
                        MergeStrategy::Shallow
                    }
                },
            };
            includes.push(IncludeRef {
                name,
                dir: parent(&path).unwrap_or("").to_owned(),
                merge,
                config: loaded,
            });
        }
        includes
    }

    /// Warns about a referenced config that is missing or does not parse.
    fn check_loaded(
        &mut self,
        loaded: &Loaded,
        via: &HclFile,
        span: Option<Range<usize>>,
        what: &str,
        path: &str,
    ) {
        match loaded {
            Loaded::Parsed(_) => {}
            Loaded::Missing => self.warn(via.warning(span, format!("{what} not found: {path}"))),
            Loaded::Invalid(err) => self.warn(Warning {
                file: err.file.clone(),
                line: err.line,
                col: err.col,
                message: format!("syntax error in {what}: {}", err.message),
            }),
        }
    }

    /// Files read by functions anywhere in the scope's file; `read_terragrunt_config` targets
    /// are followed, with their own directory as `get_terragrunt_dir()`.
    fn reads(&mut self, scope: &Scope<'_>) {
        let mut finder = CallFinder::default();
        finder.visit_body(&scope.file.body);
        for call in finder.calls {
            let name = call.name.name.as_str();
            let Some(arg) = call.args.iter().next() else {
                continue;
            };
            let path = match scope.path(arg) {
                Ok(path) => path,
                Err(warning) => {
                    self.warn(warning);
                    continue;
                }
            };
            let line = scope.file.line(arg.span());
            let is_dir = name == "fileset";
            self.input(InputKind::Read, path.clone(), is_dir, scope.file, line);
            match name {
                "read_terragrunt_config" => {
                    let loaded = self.cache.config(self.repo, &path);
                    // With a default (second argument) a missing file is expected.
                    if !(matches!(*loaded, Loaded::Missing) && call.args.len() > 1) {
                        self.check_loaded(&loaded, scope.file, arg.span(), "read config", &path);
                    }
                    if self.reads_seen.insert(path.clone())
                        && let Loaded::Parsed(file) = loaded.as_ref()
                    {
                        self.read_config(file, scope.original_dir);
                    }
                }
                "fileexists" | "fileset" => {}
                _ if !self.repo.is_file(&path) => {
                    self.warn(
                        scope
                            .file
                            .warning(arg.span(), format!("file not found: {path}")),
                    );
                }
                _ => {}
            }
        }
    }

    /// A `read_terragrunt_config` target: Terragrunt parses it fully, so its own reads matter
    /// (followed) and so do its include blocks (recorded, not merged into this stack).
    fn read_config(&mut self, file: &HclFile, original_dir: &str) {
        let scope = Scope {
            original_dir,
            ..Scope::new(self.repo, file, file.dir())
        };
        self.reads(&scope);
        for block in file.body.get_blocks("include") {
            let Some(attr) = block.body.get_attribute("path") else {
                continue;
            };
            match scope.path(&attr.value) {
                Ok(path) => {
                    let line = file.line(attr.value.span());
                    if !self.repo.is_file(&path) {
                        self.warn(file.warning(
                            attr.value.span(),
                            format!("included file not found: {path}"),
                        ));
                    }
                    self.input(InputKind::Include, path, false, file, line);
                }
                Err(warning) => self.warn(warning),
            }
        }
    }

    /// `dependency "x" { config_path = ... }`, merged by name: a later fragment (a later
    /// include, then the stack config) overrides an earlier block of the same name, which is how
    /// root configs declare a placeholder `config_path = ""` for children to fill in.
    fn dependency_blocks(&mut self, fragments: &[&Fragment<'_>]) {
        let mut blocks: Vec<(&str, &Scope<'_>, &Block)> = Vec::new();
        for fragment in fragments {
            let scope = &fragment.scope;
            for block in scope.file.body.get_blocks("dependency") {
                let [label] = block.labels.as_slice() else {
                    self.warn(scope.file.warning(
                        block.span(),
                        "dependency block needs exactly one label".to_owned(),
                    ));
                    continue;
                };
                let name = label.as_str();
                let has_path = block.body.has_attribute("config_path");
                match blocks.iter_mut().find(|(n, _, _)| *n == name) {
                    // A block without config_path only adds mocks or settings; the path stays.
                    Some(entry) if has_path => *entry = (name, scope, block),
                    Some(_) => {}
                    None => blocks.push((name, scope, block)),
                }
            }
        }
        for (name, scope, block) in blocks {
            self.dependency(name, scope, block);
        }
    }

    fn dependency(&mut self, name: &str, scope: &Scope<'_>, block: &Block) {
        let file = scope.file;
        if let Some(enabled) = block.body.get_attribute("enabled") {
            match enabled.value.as_bool() {
                Some(false) => return,
                Some(true) => {}
                None => self.warn(file.warning(
                    enabled.value.span(),
                    format!(
                        "cannot resolve enabled statically: {}; dependency \"{name}\" kept",
                        file.text(enabled.value.span())
                    ),
                )),
            }
        }
        let Some(attr) = block.body.get_attribute("config_path") else {
            self.warn(file.warning(
                block.span(),
                format!("dependency \"{name}\" has no config_path"),
            ));
            return;
        };
        let expansion = match expansion(scope, block) {
            Ok(expansion) => expansion,
            Err(warning) => {
                self.warn(warning);
                return;
            }
        };
        match expansion {
            None => self.dependency_edge(Some(name.to_owned()), scope, &attr.value),
            Some(iterations) => {
                for (key, vars) in &iterations {
                    let scope = scope.with_iter(vars);
                    self.dependency_edge(Some(format!("{name}[\"{key}\"]")), &scope, &attr.value);
                }
            }
        }
    }

    fn dependency_edge(&mut self, name: Option<String>, scope: &Scope<'_>, expr: &Expression) {
        let file = scope.file;
        if matches!(expr.as_str(), Some("")) {
            self.warn(file.warning(expr.span(), "empty config_path".to_owned()));
            return;
        }
        let path = match scope.path(expr) {
            Ok(path) => path,
            Err(warning) => {
                self.warn(warning);
                return;
            }
        };
        // config_path names the upstream stack's directory or its config file.
        let dir = match path
            .rsplit_once('/')
            .map_or(("", path.as_str()), |(d, f)| (d, f))
        {
            (dir, STACK_CONFIG | STACK_CONFIG_JSON) => dir.to_owned(),
            (dir, _) if self.repo.is_file(&path) => dir.to_owned(),
            _ => path,
        };
        if !self.repo.is_dir(&dir) {
            self.warn(file.warning(
                expr.span(),
                format!("dependency target not found: {}", display_dir(&dir)),
            ));
        } else if !self.repo.is_file(&join(&dir, STACK_CONFIG))
            && !self.repo.is_file(&join(&dir, STACK_CONFIG_JSON))
        {
            self.warn(file.warning(
                expr.span(),
                format!(
                    "dependency target has no terragrunt.hcl: {}",
                    display_dir(&dir)
                ),
            ));
        }
        if dir == self.stack_dir {
            self.warn(file.warning(expr.span(), "stack depends on itself".to_owned()));
        }
        self.refs.dependencies.push(Dependency {
            name,
            dir,
            file: file.path.clone(),
            line: file.line(expr.span()),
        });
    }

    /// `dependencies { paths = [...] }`. A shallow merge replaces the included block with the
    /// stack's own; a deep merge concatenates.
    fn dependencies_block(&mut self, fragments: &[&Fragment<'_>]) {
        let child_has_block = fragments
            .last()
            .is_some_and(|child| child.scope.file.body.has_blocks("dependencies"));
        let last = fragments.len().saturating_sub(1);
        for (i, fragment) in fragments.iter().enumerate() {
            if i != last && child_has_block && fragment.merge != MergeStrategy::Deep {
                continue;
            }
            let scope = &fragment.scope;
            for block in scope.file.body.get_blocks("dependencies") {
                let Some(attr) = block.body.get_attribute("paths") else {
                    continue;
                };
                for (result, span) in scope.paths(&attr.value) {
                    match result {
                        Ok(dir) => self.dependency_dir(scope, dir, span),
                        Err(warning) => self.warn(warning),
                    }
                }
            }
        }
    }

    fn dependency_dir(&mut self, scope: &Scope<'_>, path: String, span: Option<Range<usize>>) {
        let dir = match path
            .rsplit_once('/')
            .map_or(("", path.as_str()), |(d, f)| (d, f))
        {
            (dir, STACK_CONFIG | STACK_CONFIG_JSON) => dir.to_owned(),
            _ => path,
        };
        if !self.repo.is_dir(&dir) {
            self.warn(scope.file.warning(
                span.clone(),
                format!("dependency target not found: {}", display_dir(&dir)),
            ));
        }
        self.refs.dependencies.push(Dependency {
            name: None,
            dir,
            file: scope.file.path.clone(),
            line: scope.file.line(span),
        });
    }

    /// `terraform { source, extra_arguments }`: the stack's own `source` overrides an included
    /// one; `extra_arguments` blocks merge by label, later ones winning.
    fn terraform_block(&mut self, fragments: &[&Fragment<'_>]) {
        let mut source = None;
        let mut extra_args: Vec<(&str, &Scope<'_>, &Block)> = Vec::new();
        for fragment in fragments {
            let scope = &fragment.scope;
            for terraform in scope.file.body.get_blocks("terraform") {
                if let Some(attr) = terraform.body.get_attribute("source") {
                    source = Some((scope, &attr.value));
                }
                for block in terraform.body.get_blocks("extra_arguments") {
                    let label = block.labels.first().map_or("", |l| l.as_str());
                    match extra_args.iter_mut().find(|(l, _, _)| *l == label) {
                        Some(entry) => *entry = (label, scope, block),
                        None => extra_args.push((label, scope, block)),
                    }
                }
            }
        }
        if let Some((scope, expr)) = source {
            self.source(scope, expr);
        }
        for (_, scope, block) in extra_args {
            self.extra_arguments(scope, block);
        }
    }

    fn source(&mut self, scope: &Scope<'_>, expr: &Expression) {
        // Remote sources are pinned and validated elsewhere; they are not files in this tree.
        if is_remote_source(leading_literal(expr)) {
            return;
        }
        let value = match scope.eval(expr) {
            Ok(Value::Str(s)) => s,
            Ok(Value::List(_)) => {
                self.warn(scope.eval_warning(expr, EvalError::Dynamic(expr.span())));
                return;
            }
            Err(err) => {
                self.warn(scope.eval_warning(expr, err));
                return;
            }
        };
        if is_remote_source(&value) {
            return;
        }
        // `?ref=` means nothing for a local path; `dir//sub` (go-getter's "copy dir, use sub")
        // normalizes to `dir/sub`, which is the module that is planned.
        let local = value.split('?').next().unwrap_or_default();
        let local = local.strip_prefix("file://").unwrap_or(local);
        let dir = match scope.resolve(local) {
            Ok(dir) => dir,
            Err(err) => {
                self.warn(scope.path_warning(expr, err));
                return;
            }
        };
        if !self.repo.is_dir(&dir) {
            self.warn(scope.file.warning(
                expr.span(),
                format!(
                    "terraform source directory not found: {}",
                    display_dir(&dir)
                ),
            ));
        }
        let line = scope.file.line(expr.span());
        self.input(InputKind::Source, dir.clone(), true, scope.file, line);
        self.module_roots.push(dir);
    }

    fn extra_arguments(&mut self, scope: &Scope<'_>, block: &Block) {
        for (attr_name, required) in [("required_var_files", true), ("optional_var_files", false)] {
            let Some(attr) = block.body.get_attribute(attr_name) else {
                continue;
            };
            for (result, span) in scope.paths(&attr.value) {
                match result {
                    Ok(path) => self.var_file(scope, path, span, required),
                    Err(warning) => self.warn(warning),
                }
            }
        }
        let Some(arguments) = block.body.get_attribute("arguments") else {
            return;
        };
        let Expression::Array(items) = &arguments.value else {
            // Could hide a -var-file; say so rather than silently miss it.
            if !matches!(scope.eval(&arguments.value), Ok(Value::List(_))) {
                self.warn(scope.file.warning(
                    arguments.value.span(),
                    format!(
                        "cannot resolve extra_arguments arguments statically: {}",
                        scope.file.text(arguments.value.span())
                    ),
                ));
            }
            return;
        };
        let items: Vec<&Expression> = items.iter().collect();
        for (i, item) in items.iter().enumerate() {
            let literal = leading_literal(item);
            let path = if literal == "-var-file" {
                match items.get(i + 1) {
                    Some(next) => scope.path(next).map(|p| (p, next.span())),
                    None => continue,
                }
            } else if literal.starts_with("-var-file=") {
                match scope.eval(item) {
                    Ok(Value::Str(s)) => {
                        let value = s.strip_prefix("-var-file=").unwrap_or(&s);
                        scope
                            .resolve(value)
                            .map(|p| (p, item.span()))
                            .map_err(|err| scope.path_warning(item, err))
                    }
                    Ok(Value::List(_)) => {
                        Err(scope.eval_warning(item, EvalError::Dynamic(item.span())))
                    }
                    Err(err) => Err(scope.eval_warning(item, err)),
                }
            } else {
                continue;
            };
            match path {
                Ok((path, span)) => self.var_file(scope, path, span, true),
                Err(warning) => self.warn(warning),
            }
        }
    }

    /// A var file is an input even when absent: creating an optional one changes the plan.
    fn var_file(
        &mut self,
        scope: &Scope<'_>,
        path: String,
        span: Option<Range<usize>>,
        required: bool,
    ) {
        if required && !self.repo.is_file(&path) {
            self.warn(
                scope
                    .file
                    .warning(span.clone(), format!("var file not found: {path}")),
            );
        }
        let line = scope.file.line(span);
        self.input(InputKind::VarFile, path, false, scope.file, line);
    }

    fn finish(mut self) -> StackRefs {
        let refs = &mut self.refs;
        // A named `dependency` block explains an edge better than a `dependencies` entry, so it
        // sorts first and survives the dedup.
        fn key(d: &Dependency) -> (&str, bool, Option<&str>, &str, u32) {
            let name = d.name.as_deref();
            (&d.dir, name.is_none(), name, &d.file, d.line)
        }
        refs.dependencies.sort_by(|a, b| key(a).cmp(&key(b)));
        refs.dependencies.dedup_by(|b, a| a.dir == b.dir);
        refs.inputs.sort_by(|a, b| {
            (&a.path, a.kind, &a.via, a.line).cmp(&(&b.path, b.kind, &b.via, b.line))
        });
        refs.inputs
            .dedup_by(|b, a| a.path == b.path && a.kind == b.kind);
        refs.warnings.sort();
        refs.warnings.dedup();
        self.refs
    }
}

/// Instance key (`"web"`, `"0"`) and the iteration variables it binds.
type Instances = Vec<(String, IterVars)>;

/// The instances of a `dependency` block with an `expansion { for_each | count }`, when
/// they are literal. `Ok(None)` for a plain block.
fn expansion(scope: &Scope<'_>, block: &Block) -> Result<Option<Instances>, Warning> {
    let Some(expansion) = block.body.get_blocks("expansion").next() else {
        return Ok(None);
    };
    let file = scope.file;
    let unresolvable = |span: Option<Range<usize>>| {
        file.warning(
            span.clone(),
            format!(
                "cannot resolve dependency expansion statically: {}",
                file.text(span)
            ),
        )
    };
    if let Some(count) = expansion.body.get_attribute("count") {
        let n = count
            .value
            .as_number()
            .and_then(|n| n.as_u64())
            .ok_or_else(|| unresolvable(count.value.span()))?;
        return Ok(Some(
            (0..n)
                .map(|i| {
                    let index = i.to_string();
                    let vars = IterVars {
                        index: Some(index.clone()),
                        ..IterVars::default()
                    };
                    (index, vars)
                })
                .collect(),
        ));
    }
    let Some(for_each) = expansion.body.get_attribute("for_each") else {
        return Err(unresolvable(expansion.span()));
    };
    let mut expr = &for_each.value;
    if let Expression::FuncCall(call) = expr
        && matches!(call.name.name.as_str(), "toset" | "tolist" | "tomap")
        && call.args.len() == 1
        && let Some(inner) = call.args.iter().next()
    {
        expr = inner;
    }
    let mut iterations = Vec::new();
    match expr {
        Expression::Object(object) => {
            for (key, value) in object.iter() {
                let key = match key {
                    ObjectKey::Ident(ident) => ident.as_str().to_owned(),
                    ObjectKey::Expression(expr) => scope
                        .eval_plain(expr)
                        .map_err(|_| unresolvable(for_each.value.span()))?,
                };
                let value = scope.eval_plain(value.expr()).ok();
                iterations.push((
                    key.clone(),
                    IterVars {
                        key: Some(key),
                        value,
                        index: None,
                    },
                ));
            }
        }
        _ => match scope.eval(expr) {
            Ok(Value::List(items)) => {
                for item in items {
                    match item {
                        Value::Str(s) if !s.contains(ROOT) => {
                            iterations.push((
                                s.clone(),
                                IterVars {
                                    key: Some(s.clone()),
                                    value: Some(s),
                                    index: None,
                                },
                            ));
                        }
                        _ => return Err(unresolvable(for_each.value.span())),
                    }
                }
            }
            _ => return Err(unresolvable(for_each.value.span())),
        },
    }
    Ok(Some(iterations))
}

/// Collects calls to [`READ_FUNCTIONS`] anywhere in a body, nested ones included
/// (`read_terragrunt_config(find_in_parent_folders("env.hcl"))`, `try(file(...), "")`).
#[derive(Default)]
struct CallFinder {
    calls: Vec<FuncCall>,
}

impl Visit for CallFinder {
    fn visit_func_call(&mut self, node: &FuncCall) {
        if !node.name.is_namespaced() && READ_FUNCTIONS.contains(&node.name.name.as_str()) {
            self.calls.push(node.clone());
        }
        visit::visit_func_call(self, node);
    }
}

/// go-getter's view of a source string: a forced getter (`git::`), a URL scheme, or one of the
/// hosts its detectors recognise. Everything else is a local path.
fn is_remote_source(source: &str) -> bool {
    if source.starts_with("file://") {
        return false;
    }
    const HOSTS: &[&str] = &["github.com/", "gitlab.com/", "bitbucket.org/"];
    source.contains("::")
        || source.contains("://")
        || source.starts_with("git@")
        || HOSTS.iter().any(|host| source.starts_with(host))
        || source.split('/').next().is_some_and(|host| {
            host.ends_with(".amazonaws.com") || host.ends_with(".googleapis.com")
        })
}

// ---------------------------------------------------------------------------------------------
// Terraform module directories
// ---------------------------------------------------------------------------------------------

/// The local `module` sources of the Terraform files directly in `dir`.
fn scan_module_dir(repo: &dyn Tree, dir: &str) -> DirModules {
    let mut modules = DirModules::default();
    for name in repo.list_dir(dir) {
        let path = join(dir, &name);
        let hcl = name.ends_with(".tf") || name.ends_with(".tofu");
        let json = name.ends_with(".tf.json") || name.ends_with(".tofu.json");
        if !hcl && !json {
            continue;
        }
        let Some(bytes) = repo.read(&path) else {
            continue;
        };
        if hcl {
            match HclFile::parse(&path, &bytes) {
                Ok(file) => hcl_module_sources(repo, &file, dir, &mut modules),
                Err(err) => modules.warnings.push(Warning {
                    file: err.file,
                    line: err.line,
                    col: err.col,
                    message: format!("syntax error in Terraform file: {}", err.message),
                }),
            }
        } else {
            json_module_sources(repo, &path, &bytes, dir, &mut modules);
        }
    }
    modules
}

fn hcl_module_sources(repo: &dyn Tree, file: &HclFile, dir: &str, out: &mut DirModules) {
    for block in file.body.get_blocks("module") {
        let Some(attr) = block.body.get_attribute("source") else {
            continue;
        };
        let span = attr.value.span();
        // Terraform requires a literal source (OpenTofu also allows static variables, which we
        // do not evaluate here).
        let literal = match &attr.value {
            Expression::String(s) => Some(s.value().clone()),
            Expression::StringTemplate(t) => t
                .iter()
                .map(|e| e.as_literal().map(|l| l.value().as_str()))
                .collect::<Option<String>>(),
            _ => None,
        };
        let Some(source) = literal else {
            if !is_remote_source(leading_literal(&attr.value)) {
                out.warnings.push(file.warning(
                    span.clone(),
                    format!(
                        "cannot resolve module source statically: {}",
                        file.text(span)
                    ),
                ));
            }
            continue;
        };
        let (line, col) = file.position(span);
        module_edge(repo, &source, dir, &file.path, line, col, out);
    }
}

fn json_module_sources(repo: &dyn Tree, path: &str, bytes: &[u8], dir: &str, out: &mut DirModules) {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(err) => {
            out.warnings.push(Warning {
                file: path.to_owned(),
                line: to_u32(err.line()),
                col: to_u32(err.column()),
                message: format!("syntax error in Terraform JSON file: {err}"),
            });
            return;
        }
    };
    // `"module": {"name": {...}}`, where either level may also be an array of such objects.
    fn objects(value: &serde_json::Value) -> Vec<&serde_json::Map<String, serde_json::Value>> {
        match value {
            serde_json::Value::Object(map) => vec![map],
            serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_object()).collect(),
            _ => Vec::new(),
        }
    }
    let src = String::from_utf8_lossy(bytes);
    let starts = line_starts(&src);
    for modules in value.get("module").map(objects).unwrap_or_default() {
        for body in modules.values().flat_map(objects) {
            let Some(source) = body.get("source") else {
                continue;
            };
            let Some(source) = source.as_str() else {
                out.warnings.push(Warning {
                    file: path.to_owned(),
                    line: 1,
                    col: 1,
                    message: format!("cannot resolve module source statically: {source}"),
                });
                continue;
            };
            // serde_json keeps no positions; the first occurrence of the encoded string is the
            // line a reader would look at.
            let needle = serde_json::to_string(source).unwrap_or_default();
            let offset = src.find(&needle).unwrap_or(0);
            let (line, col) = position(&src, &starts, offset);
            module_edge(repo, source, dir, path, line, col, out);
        }
    }
}

fn module_edge(
    repo: &dyn Tree,
    source: &str,
    dir: &str,
    via: &str,
    line: u32,
    col: u32,
    out: &mut DirModules,
) {
    // Terraform treats only ./ and ../ as local paths; anything else is a registry or remote
    // address.
    let local =
        source == "." || source == ".." || source.starts_with("./") || source.starts_with("../");
    if !local {
        return;
    }
    let warning = |message: String| Warning {
        file: via.to_owned(),
        line,
        col,
        message,
    };
    let Some(module_dir) = normalize(&join(dir, source)) else {
        out.warnings.push(warning(format!(
            "path escapes the repository: module source {source}"
        )));
        return;
    };
    if !repo.is_dir(&module_dir) {
        out.warnings.push(warning(format!(
            "module directory not found: {}",
            display_dir(&module_dir)
        )));
    }
    if module_dir != dir {
        out.edges.push(ModuleEdge {
            dir: module_dir,
            via: via.to_owned(),
            line,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// In-memory tree
// ---------------------------------------------------------------------------------------------

/// A [`Tree`] over an in-memory map of path → content: a test double for this module's
/// unit tests, never compiled into the product (a product reads trees through git).
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub struct MemoryFiles {
    files: std::collections::BTreeMap<String, Arc<[u8]>>,
}

#[cfg(test)]
impl MemoryFiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: &str, content: impl AsRef<[u8]>) {
        self.files
            .insert(path.to_owned(), Arc::from(content.as_ref()));
    }
}

#[cfg(test)]
impl<P: AsRef<str>, C: AsRef<[u8]>> FromIterator<(P, C)> for MemoryFiles {
    fn from_iter<I: IntoIterator<Item = (P, C)>>(iter: I) -> Self {
        let mut files = MemoryFiles::new();
        for (path, content) in iter {
            files.insert(path.as_ref(), content);
        }
        files
    }
}

#[cfg(test)]
impl Tree for MemoryFiles {
    fn revision(&self) -> String {
        "memory".to_string()
    }

    fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Box::new(
            self.files
                .range(prefix.clone()..)
                .take_while(move |(p, _)| p.starts_with(&prefix))
                .map(|(p, _)| p.as_str()),
        )
    }

    fn read(&self, path: &str) -> Option<Arc<[u8]>> {
        self.files.get(path).cloned()
    }

    fn is_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return !self.files.is_empty();
        }
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    fn list_dir(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter_map(|(p, _)| {
                let rest = &p[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree(files: &[(&str, &str)]) -> MemoryFiles {
        files.iter().copied().collect()
    }

    fn eval(files: &MemoryFiles, dir: &str) -> StackRefs {
        evaluate_stack(dir, files, &ModuleCache::new()).expect("stack config parses")
    }

    #[test]
    fn a_backend_or_cloud_block_inside_terraform_configures_state() {
        let yes = [
            "terraform {\n  backend \"s3\" {}\n}\n",
            "terraform {\n  required_version = \">= 1.5\"\n  cloud {\n    organization = \"acme\"\n  }\n}\n",
        ];
        for src in yes {
            assert_eq!(declares_backend("main.tf", src), Ok(true), "{src}");
        }
        let no = [
            "resource \"terraform_data\" \"a\" {}\n",
            "terraform {\n  required_version = \">= 1.5\"\n}\n",
            // A block named backend outside `terraform` is something else.
            "module \"backend\" {\n  source = \"./m\"\n}\nlocals {\n  backend = 1\n}\n",
        ];
        for src in no {
            assert_eq!(declares_backend("main.tf", src), Ok(false), "{src}");
        }
        let e = declares_backend("live/x/main.tf", "terraform {").unwrap_err();
        assert_eq!(e.file, "live/x/main.tf");
    }

    fn dep_dirs(refs: &StackRefs) -> Vec<&str> {
        refs.dependencies.iter().map(|d| d.dir.as_str()).collect()
    }

    fn inputs(refs: &StackRefs) -> Vec<(InputKind, &str)> {
        refs.inputs
            .iter()
            .map(|i| (i.kind, i.path.as_str()))
            .collect()
    }

    fn warning<'r>(refs: &'r StackRefs, needle: &str) -> &'r Warning {
        refs.warnings
            .iter()
            .find(|w| w.message.contains(needle))
            .unwrap_or_else(|| panic!("no warning containing {needle:?} in {:#?}", refs.warnings))
    }

    #[test]
    fn dependency_and_dependencies_blocks() {
        let files = tree(&[
            (
                "live/app/terragrunt.hcl",
                r#"
dependency "vpc" {
  config_path = "../vpc"
}

dependency "db" {
  config_path = "${get_terragrunt_dir()}/../db/terragrunt.hcl"
}

dependencies {
  paths = ["../iam", "../dns/"]
}
"#,
            ),
            ("live/vpc/terragrunt.hcl", ""),
            ("live/db/terragrunt.hcl", ""),
            ("live/iam/terragrunt.hcl", ""),
            ("live/dns/terragrunt.hcl", ""),
        ]);
        let refs = eval(&files, "live/app");
        assert_eq!(
            dep_dirs(&refs),
            ["live/db", "live/dns", "live/iam", "live/vpc"]
        );
        let vpc = &refs.dependencies[3];
        assert_eq!(vpc.name.as_deref(), Some("vpc"));
        assert_eq!(
            (vpc.file.as_str(), vpc.line),
            ("live/app/terragrunt.hcl", 3)
        );
        assert_eq!(refs.dependencies[1].name, None);
        assert_eq!(refs.dependencies[1].line, 11);
        assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);
    }

    #[test]
    fn missing_dependency_target_is_kept_with_a_warning() {
        let files = tree(&[
            (
                "live/app/terragrunt.hcl",
                "dependency \"vpc\" {\n  config_path = \"../vpc\"\n}\n",
            ),
            ("live/empty/README.md", ""),
        ]);
        let refs = eval(&files, "live/app");
        assert_eq!(dep_dirs(&refs), ["live/vpc"]);
        let w = warning(&refs, "dependency target not found: live/vpc");
        assert_eq!(
            (w.file.as_str(), w.line, w.col),
            ("live/app/terragrunt.hcl", 2, 17)
        );
    }

    #[test]
    fn paths_escaping_the_repository_are_dropped() {
        let files = tree(&[(
            "live/app/terragrunt.hcl",
            r#"
dependency "up" {
  config_path = "../../../vpc"
}
dependency "abs" {
  config_path = "/etc/stacks/vpc"
}
dependency "root" {
  config_path = "${get_repo_root()}/../elsewhere"
}
"#,
        )]);
        let refs = eval(&files, "live/app");
        assert!(refs.dependencies.is_empty());
        let escapes: Vec<_> = refs
            .warnings
            .iter()
            .filter(|w| w.message.starts_with("path escapes the repository"))
            .map(|w| w.line)
            .collect();
        assert_eq!(escapes, [3, 6, 9]);
    }

    #[test]
    fn unresolvable_expressions_warn_with_text_and_position() {
        let files = tree(&[(
            "live/app/terragrunt.hcl",
            r#"locals {
  env_vars = read_terragrunt_config(find_in_parent_folders("env.hcl"))
  env      = local.env_vars.locals.env
}

dependency "a" {
  config_path = "../${local.env_vars.locals.env}/vpc"
}

dependency "b" {
  config_path = local.env
}

dependency "c" {
  config_path = get_env("VPC_DIR", "../vpc")
}

dependency "d" {
  config_path = var.dir
}

dependency "e" {
  config_path = (
    local.env == "prod"
    ? "../prod-vpc"
    : "../vpc"
  )
}
"#,
        )]);
        let refs = eval(&files, "live/app");
        assert!(refs.dependencies.is_empty());
        let a = warning(&refs, "\"../${local.env_vars.locals.env}/vpc\"");
        assert_eq!((a.line, a.col), (7, 17));
        assert!(a.message.starts_with("cannot resolve path statically"));
        assert!(
            a.message
                .contains("(local.env_vars.locals.env is not static)")
        );
        let b = warning(&refs, "cannot resolve path statically: local.env");
        assert!(
            b.message
                .contains("local.env_vars.locals.env is not static")
        );
        assert_eq!(b.line, 11);
        warning(&refs, "get_env(\"VPC_DIR\", \"../vpc\")");
        warning(&refs, "var.dir");
        // Multi-line expressions are quoted on one line.
        let e = warning(
            &refs,
            "statically: ( local.env == \"prod\" ? \"../prod-vpc\" : \"../vpc\" )",
        );
        assert_eq!((e.line, e.col), (23, 17));
        // The read itself has no env.hcl to find.
        warning(&refs, "find_in_parent_folders: no `env.hcl`");
    }

    #[test]
    fn locals_resolve_within_the_same_file() {
        let files = tree(&[
            (
                "live/prod/app/terragrunt.hcl",
                r#"
locals {
  live   = "${get_terragrunt_dir()}/../.."
  region = "${local.live}/prod"
  loop_a = local.loop_b
  loop_b = local.loop_a
}
dependency "vpc" {
  config_path = "${local.region}/vpc"
}
dependency "x" {
  config_path = local.loop_a
}
dependency "y" {
  config_path = local.missing
}
"#,
            ),
            ("live/prod/vpc/terragrunt.hcl", ""),
        ]);
        let refs = eval(&files, "live/prod/app");
        assert_eq!(dep_dirs(&refs), ["live/prod/vpc"]);
        warning(&refs, "refers to itself");
        warning(&refs, "local.missing is not defined");
    }

    #[test]
    fn find_in_parent_folders_walks_up_from_the_parent() {
        let files = tree(&[
            ("root.hcl", ""),
            ("live/root.hcl", ""),
            ("live/terragrunt.hcl", ""),
            ("live/common/vpc/terragrunt.hcl", ""),
            // Not a parent folder: must not be found.
            ("live/prod/app/env.hcl", ""),
            (
                "live/prod/app/terragrunt.hcl",
                r#"
include "root" {
  path = find_in_parent_folders("root.hcl")
}
locals {
  a = read_terragrunt_config(find_in_parent_folders("env.hcl"))
  b = read_terragrunt_config(find_in_parent_folders("nope.hcl", "${get_terragrunt_dir()}/env.hcl"))
}
dependency "vpc" {
  config_path = dirname(find_in_parent_folders("common/vpc/terragrunt.hcl"))
}
"#,
            ),
            (
                "live/prod/db/terragrunt.hcl",
                "include {\n  path = find_in_parent_folders()\n}\n",
            ),
        ]);
        let refs = eval(&files, "live/prod/app");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Read, "live/prod/app/env.hcl"),
                (InputKind::Include, "live/root.hcl"),
            ]
        );
        assert_eq!(dep_dirs(&refs), ["live/common/vpc"]);
        let w = warning(
            &refs,
            "no `env.hcl` in any parent folder of `live/prod/app`",
        );
        assert_eq!(w.line, 6);

        // No argument: the nearest terragrunt.hcl above.
        let refs = eval(&files, "live/prod/db");
        assert_eq!(inputs(&refs), [(InputKind::Include, "live/terragrunt.hcl")]);
    }

    /// The _envcommon layout: a root config and a per-component config, both included, with
    /// paths written relative to the including stack.
    #[test]
    fn include_merges_dependencies_reads_and_source() {
        let files = tree(&[
            (
                "live/root.hcl",
                r#"
locals {
  account = read_terragrunt_config(find_in_parent_folders("account.hcl"))
  tags    = read_terragrunt_config("${get_parent_terragrunt_dir()}/tags/${path_relative_to_include()}.hcl")
}
remote_state {
  backend = "s3"
  config = {
    key = "${path_relative_to_include()}/tf.tfstate"
  }
}
"#,
            ),
            (
                "live/_envcommon/mysql.hcl",
                r#"
terraform {
  source = "${get_repo_root()}/modules//mysql"
}
dependency "vpc" {
  config_path = "${get_terragrunt_dir()}/../vpc"
}
dependency "kms" {
  config_path = "../kms"
}
"#,
            ),
            ("live/prod/account.hcl", "locals {\n  id = \"1\"\n}\n"),
            ("live/tags/prod/mysql.hcl", ""),
            ("live/prod/vpc/terragrunt.hcl", ""),
            ("live/prod/kms/terragrunt.hcl", ""),
            ("modules/mysql/main.tf", ""),
            (
                "live/prod/mysql/terragrunt.hcl",
                r#"
include "root" {
  path = find_in_parent_folders("root.hcl")
}

include "envcommon" {
  path   = "${dirname(find_in_parent_folders("root.hcl"))}/_envcommon/mysql.hcl"
  expose = true
}
"#,
            ),
        ]);
        let refs = eval(&files, "live/prod/mysql");
        assert_eq!(dep_dirs(&refs), ["live/prod/kms", "live/prod/vpc"]);
        assert_eq!(refs.dependencies[0].file, "live/_envcommon/mysql.hcl");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Include, "live/_envcommon/mysql.hcl"),
                (InputKind::Read, "live/prod/account.hcl"),
                (InputKind::Include, "live/root.hcl"),
                (InputKind::Read, "live/tags/prod/mysql.hcl"),
                (InputKind::Source, "modules/mysql"),
            ]
        );
        let include = &refs.inputs[0];
        assert_eq!(
            (include.via.as_str(), include.line),
            ("live/prod/mysql/terragrunt.hcl", 7)
        );
        assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);
    }

    #[test]
    fn path_relative_to_include_needs_a_name_with_several_includes() {
        let files = tree(&[
            ("live/a.hcl", ""),
            ("live/b.hcl", ""),
            ("live/vars/prod/app.tfvars", ""),
            (
                "live/prod/app/terragrunt.hcl",
                r#"
include "a" {
  path = find_in_parent_folders("a.hcl")
}
include "b" {
  path = find_in_parent_folders("b.hcl")
}
terraform {
  extra_arguments "vars" {
    commands           = ["plan"]
    required_var_files = [
      "${get_parent_terragrunt_dir("b")}/vars/${path_relative_to_include("b")}.tfvars",
      "${get_parent_terragrunt_dir()}/vars/${path_relative_to_include()}.tfvars",
    ]
  }
}
"#,
            ),
        ]);
        let refs = eval(&files, "live/prod/app");
        assert!(inputs(&refs).contains(&(InputKind::VarFile, "live/vars/prod/app.tfvars")));
        let w = warning(&refs, "2 include blocks; name the one you mean");
        assert_eq!(w.line, 13);
    }

    #[test]
    fn child_dependency_overrides_an_included_placeholder() {
        let files = tree(&[
            (
                "root.hcl",
                "dependency \"vpc\" {\n  config_path = \"\"\n  mock_outputs = {}\n}\n",
            ),
            (
                "app/terragrunt.hcl",
                r#"
include {
  path           = find_in_parent_folders("root.hcl")
  merge_strategy = "deep"
}
dependency "vpc" {
  config_path = "../vpc"
}
"#,
            ),
            ("vpc/terragrunt.hcl", ""),
            (
                "lonely/terragrunt.hcl",
                "include {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n",
            ),
        ]);
        let refs = eval(&files, "app");
        assert_eq!(dep_dirs(&refs), ["vpc"]);
        assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);

        let refs = eval(&files, "lonely");
        assert!(refs.dependencies.is_empty());
        let w = warning(&refs, "empty config_path");
        assert_eq!((w.file.as_str(), w.line), ("root.hcl", 2));
    }

    #[test]
    fn no_merge_include_contributes_no_dependencies() {
        let files = tree(&[
            (
                "deps.hcl",
                "dependency \"vpc\" {\n  config_path = \"${get_terragrunt_dir()}/../vpc\"\n}\n",
            ),
            ("vpc/terragrunt.hcl", ""),
            (
                "app/terragrunt.hcl",
                r#"
include "deps" {
  path           = find_in_parent_folders("deps.hcl")
  expose         = true
  merge_strategy = "no_merge"
}
dependency "vpc" {
  config_path = include.deps.dependency.vpc.config_path
}
"#,
            ),
        ]);
        let refs = eval(&files, "app");
        assert!(refs.dependencies.is_empty());
        assert_eq!(inputs(&refs), [(InputKind::Include, "deps.hcl")]);
        warning(&refs, "include.deps.dependency.vpc.config_path");
    }

    #[test]
    fn nested_include_is_reported_not_followed() {
        let files = tree(&[
            (
                "top.hcl",
                "dependency \"x\" {\n  config_path = \"../x\"\n}\n",
            ),
            (
                "live/root.hcl",
                "include {\n  path = find_in_parent_folders(\"top.hcl\")\n}\n",
            ),
            (
                "live/app/terragrunt.hcl",
                "include {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n",
            ),
        ]);
        let refs = eval(&files, "live/app");
        assert_eq!(inputs(&refs), [(InputKind::Include, "live/root.hcl")]);
        assert!(refs.dependencies.is_empty());
        let w = warning(&refs, "nested include is not followed");
        assert_eq!((w.file.as_str(), w.line), ("live/root.hcl", 1));
    }

    #[test]
    fn missing_and_broken_included_files_are_warnings() {
        let files = tree(&[
            ("live/broken.hcl", "locals {\n  x = \n}\n"),
            (
                "live/app/terragrunt.hcl",
                r#"
include "gone" {
  path = "../gone.hcl"
}
include "broken" {
  path = "../broken.hcl"
}
locals {
  r = read_terragrunt_config("../gone-read.hcl")
  d = read_terragrunt_config("../gone-default.hcl", { locals = {} })
}
"#,
            ),
        ]);
        let refs = eval(&files, "live/app");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Include, "live/broken.hcl"),
                (InputKind::Read, "live/gone-default.hcl"),
                (InputKind::Read, "live/gone-read.hcl"),
                (InputKind::Include, "live/gone.hcl"),
            ]
        );
        let w = warning(&refs, "included file not found: live/gone.hcl");
        assert_eq!(
            (w.file.as_str(), w.line, w.col),
            ("live/app/terragrunt.hcl", 3, 10)
        );
        let w = warning(&refs, "syntax error in included file");
        assert_eq!((w.file.as_str(), w.line), ("live/broken.hcl", 2));
        warning(&refs, "read config not found: live/gone-read.hcl");
        assert!(
            !refs
                .warnings
                .iter()
                .any(|w| w.message.contains("gone-default"))
        );
    }

    #[test]
    fn stack_config_syntax_error_is_an_error() {
        let files = tree(&[(
            "app/terragrunt.hcl",
            "dependency \"x\" {\n  config_path = \n}\n",
        )]);
        let err = evaluate_stack("app", &files, &ModuleCache::new()).unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("app/terragrunt.hcl", 2));
        assert!(err.to_string().starts_with("app/terragrunt.hcl:2:"));
    }

    #[test]
    fn read_terragrunt_config_is_followed_transitively() {
        let files = tree(&[
            (
                "live/prod/env.hcl",
                r#"
locals {
  region = read_terragrunt_config("${get_terragrunt_dir()}/region.hcl")
  common = read_terragrunt_config("../common.hcl")
  # Cycles end: env.hcl reads itself through common.hcl.
}
"#,
            ),
            (
                "live/prod/region.hcl",
                "locals {\n  r = file(\"region.txt\")\n}\n",
            ),
            ("live/prod/region.txt", "eu-west-1"),
            (
                "live/common.hcl",
                "locals {\n  e = read_terragrunt_config(\"prod/env.hcl\")\n}\n",
            ),
            (
                "live/prod/app/terragrunt.hcl",
                "locals {\n  env = read_terragrunt_config(find_in_parent_folders(\"env.hcl\"))\n}\n",
            ),
        ]);
        let refs = eval(&files, "live/prod/app");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Read, "live/common.hcl"),
                (InputKind::Read, "live/prod/env.hcl"),
                (InputKind::Read, "live/prod/region.hcl"),
                (InputKind::Read, "live/prod/region.txt"),
            ]
        );
        let region = refs
            .inputs
            .iter()
            .find(|i| i.path == "live/prod/region.hcl")
            .unwrap();
        assert_eq!((region.via.as_str(), region.line), ("live/prod/env.hcl", 3));
        assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);
    }

    #[test]
    fn local_source_with_double_slash_and_nested_modules() {
        let files = tree(&[
            (
                "live/prod/vpc/terragrunt.hcl",
                "terraform {\n  source = \"../../../modules//vpc?ref=ignored\"\n}\n",
            ),
            (
                "modules/vpc/main.tf",
                r#"
module "subnets" {
  source = "../subnets"
}
module "registry" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.0.0"
}
module "git" {
  source = "git::https://example.com/m.git?ref=v1"
}
"#,
            ),
            (
                "modules/subnets/main.tf",
                "module \"cidr\" {\n  source = \"./cidr\"\n}\nmodule \"back\" {\n  source = \"../vpc\"\n}\n",
            ),
            ("modules/subnets/cidr/main.tf", ""),
            (
                "modules/subnets/extra.tf.json",
                r#"{"module": {"labels": {"source": "../labels"}}}"#,
            ),
            ("modules/labels/main.tf", ""),
        ]);
        let refs = eval(&files, "live/prod/vpc");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Module, "modules/labels"),
                (InputKind::Module, "modules/subnets"),
                (InputKind::Module, "modules/subnets/cidr"),
                (InputKind::Source, "modules/vpc"),
                (InputKind::Module, "modules/vpc"),
            ]
        );
        assert!(refs.inputs.iter().all(|i| i.is_dir));
        let cidr = refs
            .inputs
            .iter()
            .find(|i| i.path == "modules/subnets/cidr")
            .unwrap();
        assert_eq!(
            (cidr.via.as_str(), cidr.line),
            ("modules/subnets/main.tf", 2)
        );
        let labels = refs
            .inputs
            .iter()
            .find(|i| i.path == "modules/labels")
            .unwrap();
        assert_eq!(labels.via, "modules/subnets/extra.tf.json");
        assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);
    }

    #[test]
    fn remote_sources_are_not_inputs() {
        for source in [
            "git::https://github.com/acme/modules.git//vpc?ref=${local.version}",
            "git::git@github.com:acme/modules.git//vpc?ref=v1.2.3",
            "github.com/acme/modules//vpc?ref=${values.version}",
            "tfr://registry.terraform.io/acme/vpc/aws?version=1.0.0",
            "s3::https://s3.amazonaws.com/bucket/vpc.zip",
            "https://example.com/vpc.zip",
        ] {
            let config = format!("terraform {{\n  source = \"{source}\"\n}}\n");
            let files = tree(&[("app/terragrunt.hcl", &config)]);
            let refs = eval(&files, "app");
            assert!(refs.inputs.is_empty(), "{source}: {:?}", refs.inputs);
            assert!(refs.warnings.is_empty(), "{source}: {:?}", refs.warnings);
        }
    }

    #[test]
    fn child_source_overrides_included_source() {
        let files = tree(&[
            (
                "root.hcl",
                "terraform {\n  source = \"${get_repo_root()}/modules/base\"\n}\n",
            ),
            ("modules/base/main.tf", ""),
            ("modules/app/main.tf", ""),
            (
                "app/terragrunt.hcl",
                "include {\n  path = find_in_parent_folders(\"root.hcl\")\n}\nterraform {\n  source = \"../modules/app\"\n}\n",
            ),
            (
                "plain/terragrunt.hcl",
                "include {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n",
            ),
        ]);
        assert!(inputs(&eval(&files, "app")).contains(&(InputKind::Source, "modules/app")));
        assert!(!inputs(&eval(&files, "app")).contains(&(InputKind::Source, "modules/base")));
        let plain = eval(&files, "plain");
        let base = plain
            .inputs
            .iter()
            .find(|i| i.kind == InputKind::Source)
            .unwrap();
        assert_eq!(
            (base.path.as_str(), base.via.as_str()),
            ("modules/base", "root.hcl")
        );
    }

    #[test]
    fn unresolvable_and_missing_sources_warn() {
        let files = tree(&[(
            "app/terragrunt.hcl",
            "terraform {\n  source = \"${local.modules}/vpc\"\n}\nlocals {\n  modules = get_env(\"MODULES\")\n}\n",
        )]);
        let refs = eval(&files, "app");
        assert!(refs.inputs.is_empty());
        let w = warning(
            &refs,
            "cannot resolve path statically: \"${local.modules}/vpc\"",
        );
        assert_eq!((w.line, w.col), (2, 12));

        let files = tree(&[(
            "app/terragrunt.hcl",
            "terraform {\n  source = \"../nowhere\"\n}\n",
        )]);
        let refs = eval(&files, "app");
        assert_eq!(inputs(&refs), [(InputKind::Source, "nowhere")]);
        warning(&refs, "terraform source directory not found: nowhere");
    }

    #[test]
    fn extra_arguments_var_files() {
        let files = tree(&[
            ("live/common.tfvars", ""),
            ("live/app/app.tfvars", ""),
            ("live/app/extra.tfvars", ""),
            (
                "live/app/terragrunt.hcl",
                r#"
terraform {
  extra_arguments "common" {
    commands           = get_terraform_commands_that_need_vars()
    required_var_files = ["${get_terragrunt_dir()}/../common.tfvars"]
    optional_var_files = ["${get_terragrunt_dir()}/optional.tfvars", "${local.dynamic}.tfvars"]
  }
  extra_arguments "flags" {
    commands  = ["plan"]
    arguments = [
      "-var-file=${get_terragrunt_dir()}/app.tfvars",
      "-var-file", "extra.tfvars",
      "-lock-timeout=${local.timeout}",
    ]
  }
}
"#,
            ),
        ]);
        let refs = eval(&files, "live/app");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::VarFile, "live/app/app.tfvars"),
                (InputKind::VarFile, "live/app/extra.tfvars"),
                (InputKind::VarFile, "live/app/optional.tfvars"),
                (InputKind::VarFile, "live/common.tfvars"),
            ]
        );
        // Only the unresolvable var file is reported: a missing optional file is fine and
        // -lock-timeout is not a path.
        assert_eq!(refs.warnings.len(), 1, "{:#?}", refs.warnings);
        warning(&refs, "${local.dynamic}.tfvars");
    }

    #[test]
    fn stack_without_terragrunt_config_closes_over_its_modules() {
        let files = tree(&[
            (
                "stacks/net/main.tf",
                "module \"vpc\" {\n  source = \"../../modules/vpc\"\n}\n",
            ),
            (
                "stacks/net/broken.tf",
                "resource \"x\" \"y\" {\n  a = \n}\n",
            ),
            (
                "stacks/net/more.tofu",
                "module \"gone\" {\n  source = \"./gone\"\n}\nmodule \"up\" {\n  source = \"../../../x\"\n}\nmodule \"v\" {\n  source = var.x\n}\n",
            ),
            ("modules/vpc/main.tf", ""),
        ]);
        let refs = eval(&files, "stacks/net");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Module, "modules/vpc"),
                (InputKind::Module, "stacks/net/gone"),
            ]
        );
        let w = warning(&refs, "syntax error in Terraform file");
        assert_eq!((w.file.as_str(), w.line), ("stacks/net/broken.tf", 2));
        warning(&refs, "module directory not found: stacks/net/gone");
        let w = warning(
            &refs,
            "path escapes the repository: module source ../../../x",
        );
        assert_eq!((w.file.as_str(), w.line), ("stacks/net/more.tofu", 5));
        warning(&refs, "cannot resolve module source statically: var.x");
    }

    #[test]
    fn dependency_expansion_with_literal_for_each_and_count() {
        let files = tree(&[(
            "app/terragrunt.hcl",
            r#"
dependency "aurora" {
  expansion {
    for_each = toset(["web", "api"])
  }
  config_path = "../aurora-${each.key}"
}
dependency "shard" {
  expansion {
    count = 2
  }
  config_path = "../shard-${count.index}"
}
dependency "dynamic" {
  expansion {
    for_each = local.things
  }
  config_path = "../x-${each.key}"
}
dependency "off" {
  enabled     = false
  config_path = "../off"
}
"#,
        )]);
        let refs = eval(&files, "app");
        assert_eq!(
            dep_dirs(&refs),
            ["aurora-api", "aurora-web", "shard-0", "shard-1"]
        );
        assert_eq!(
            refs.dependencies[0].name.as_deref(),
            Some("aurora[\"api\"]")
        );
        warning(
            &refs,
            "cannot resolve dependency expansion statically: local.things",
        );
    }

    #[test]
    fn file_functions_are_read_inputs() {
        let files = tree(&[
            ("app/policy.json", "{}"),
            (
                "app/terragrunt.hcl",
                r#"
inputs = {
  policy  = file("${get_terragrunt_dir()}/policy.json")
  secrets = yamldecode(sops_decrypt_file("secrets.yaml"))
  maybe   = fileexists("optional.txt") ? file("optional.txt") : null
}
"#,
            ),
        ]);
        let refs = eval(&files, "app");
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Read, "app/optional.txt"),
                (InputKind::Read, "app/policy.json"),
                (InputKind::Read, "app/secrets.yaml"),
            ]
        );
        warning(&refs, "file not found: app/secrets.yaml");
    }

    #[test]
    fn output_is_sorted_and_deduplicated() {
        let files = tree(&[
            (
                "app/terragrunt.hcl",
                r#"
dependency "b" {
  config_path = "../b"
}
dependency "a" {
  config_path = "../a"
}
dependencies {
  paths = ["../b", "../a/terragrunt.hcl"]
}
terraform {
  source = "../modules/top"
}
"#,
            ),
            ("a/terragrunt.hcl", ""),
            ("b/terragrunt.hcl", ""),
            (
                "modules/top/main.tf",
                "module \"x\" {\n  source = \"../shared\"\n}\nmodule \"y\" {\n  source = \"../mid\"\n}\n",
            ),
            (
                "modules/mid/main.tf",
                "module \"s\" {\n  source = \"../shared\"\n}\n",
            ),
            ("modules/shared/main.tf", ""),
        ]);
        let refs = eval(&files, "app");
        assert_eq!(dep_dirs(&refs), ["a", "b"]);
        assert_eq!(refs.dependencies[0].name.as_deref(), Some("a"));
        assert_eq!(
            inputs(&refs),
            [
                (InputKind::Module, "modules/mid"),
                (InputKind::Module, "modules/shared"),
                (InputKind::Source, "modules/top"),
            ]
        );
        // Same input twice from the same evaluation: identical output.
        let again = eval(&files, "app");
        assert_eq!(refs.inputs, again.inputs);
        assert_eq!(refs.dependencies, again.dependencies);
    }

    #[test]
    fn shared_cache_across_threads_gives_the_same_answers() {
        let mut files = MemoryFiles::new();
        files.insert("root.hcl", "locals {\n  x = read_terragrunt_config(\"${get_parent_terragrunt_dir()}/common.hcl\")\n}\n");
        files.insert("common.hcl", "");
        files.insert(
            "modules/m/main.tf",
            "module \"n\" {\n  source = \"../n\"\n}\n",
        );
        files.insert("modules/n/main.tf", "");
        for i in 0..64 {
            files.insert(
                &format!("live/s{i}/terragrunt.hcl"),
                "include {\n  path = find_in_parent_folders(\"root.hcl\")\n}\nterraform {\n  source = \"../../modules/m\"\n}\n",
            );
        }
        let cache = ModuleCache::new();
        let results: Vec<StackRefs> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|i| {
                    let (files, cache) = (&files, &cache);
                    s.spawn(move || evaluate_stack(&format!("live/s{i}"), files, cache).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for refs in &results {
            assert_eq!(
                inputs(refs),
                [
                    (InputKind::Read, "common.hcl"),
                    (InputKind::Source, "modules/m"),
                    (InputKind::Module, "modules/n"),
                    (InputKind::Include, "root.hcl"),
                ]
            );
        }
    }

    #[test]
    fn check_syntax_reports_position() {
        assert!(check_syntax("ok.hcl", "a = \"b\"\nblock \"x\" {\n  c = 1\n}\n").is_ok());
        let err = check_syntax("bad.hcl", "a = 1\nb = {\n").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("bad.hcl", 2));
        assert!(!err.message.is_empty());
    }

    #[test]
    fn invalid_utf8_points_at_the_first_bad_byte() {
        let mut files = MemoryFiles::new();
        files.insert("app/terragrunt.hcl", b"a = 1\nb = \"\xff\"\n");
        let err = evaluate_stack("app", &files, &ModuleCache::new()).unwrap_err();
        assert_eq!((err.line, err.col), (2, 6));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize("a/./b//c/../d/"), Some("a/b/d".to_owned()));
        assert_eq!(normalize("/a/.."), Some(String::new()));
        assert_eq!(normalize("a/../.."), None);
        assert_eq!(relative_path("live", "live/prod/app"), "prod/app");
        assert_eq!(relative_path("live/prod/app", "live"), "../..");
        assert_eq!(relative_path("a/b", "a/b"), ".");
        assert_eq!(relative_path("a/b", "c"), "../../c");
        assert_eq!(go_dir("a/b/"), "a/b");
        assert_eq!(go_dir("a/b"), "a");
        assert_eq!(go_dir("b"), ".");
        assert_eq!(go_dir("../x/../y"), "..");
        assert_eq!(go_base("a/b/"), "b");
        assert!(is_remote_source("git::https://x"));
        assert!(is_remote_source("bucket.s3.amazonaws.com/x.zip"));
        assert!(!is_remote_source("../modules//vpc"));
        assert!(!is_remote_source("modules/vpc"));
    }

    #[test]
    fn memory_files_lists_only_direct_children() {
        let files = tree(&[
            ("a/x.tf", ""),
            ("a/b/y.tf", ""),
            ("ab/z.tf", ""),
            ("top.tf", ""),
        ]);
        assert_eq!(files.list_dir("a"), ["x.tf"]);
        assert_eq!(files.list_dir(""), ["top.tf"]);
        assert!(files.is_dir("a/b") && files.is_dir("a") && !files.is_dir("a/x.tf"));
        assert!(!files.is_dir("b"));
    }

    #[test]
    fn module_cache_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ModuleCache>();
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("a"),
            Just("b"),
            Just("c.d"),
            Just("."),
            Just(".."),
            Just(""),
            Just("terragrunt.hcl"),
        ];
        (any::<bool>(), proptest::collection::vec(part, 0..12)).prop_map(|(lead, parts)| {
            let joined = parts.join("/");
            if lead { format!("/{joined}") } else { joined }
        })
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_clean(path in path_strategy()) {
            if let Some(once) = normalize(&path) {
                prop_assert_eq!(normalize(&once), Some(once.clone()));
                prop_assert!(!once.starts_with('/') && !once.ends_with('/'));
                if !once.is_empty() {
                    prop_assert!(once.split('/').all(|p| !matches!(p, "" | "." | "..")));
                }
            }
        }

        #[test]
        fn relative_path_round_trips(from in path_strategy(), to in path_strategy()) {
            if let (Some(from), Some(to)) = (normalize(&from), normalize(&to)) {
                let rel = relative_path(&from, &to);
                prop_assert_eq!(normalize(&join(&from, &rel)), Some(to));
            }
        }
    }
}
