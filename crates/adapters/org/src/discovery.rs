//! Discovery: the org's stacks and apps at one revision, their owners, what each is built
//! from, and the stack dependency graph, all read from git objects.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;
use sluice_model::affected::{ReasonKind, Unit, UnitInput};
use sluice_model::codeowners::CodeOwners;
use sluice_model::config::{self, OrgConfig};
use sluice_model::graph::{LayerViolation, StackGraph};
use sluice_model::path;
use sluice_model::tree::Tree;

use crate::kustomize::{self, AppKind};
use crate::terragrunt::{self, InputKind, ModuleCache, StackRefs, Warning};

/// Where GitHub looks for CODEOWNERS, in its order of precedence.
pub const CODEOWNERS_PATHS: &[&str] = &[".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    pub id: String,
    pub path: String,
    pub env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The `{stack}` part of the id (the whole id when the layout has no `{stack}`).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    pub owners: Vec<String>,
    /// Ids of the upstream stacks it depends on, sorted.
    pub depends_on: Vec<String>,
    #[serde(skip)]
    pub refs: StackRefs,
}

#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub id: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub kind: AppKind,
    pub owners: Vec<String>,
    #[serde(skip)]
    pub refs: Vec<kustomize::AppRef>,
    /// Local references its kustomization or chart makes that do not exist or leave the
    /// repository: the app cannot render (also among [`Org::warnings`]).
    #[serde(skip)]
    pub broken_refs: Vec<Warning>,
}

/// Graph problems that make a configuration invalid.
#[derive(Debug, Clone, Serialize)]
pub struct GraphErrors {
    pub cycles: Vec<Vec<String>>,
    pub layer_violations: Vec<String>,
}

impl GraphErrors {
    pub fn is_empty(&self) -> bool {
        self.cycles.is_empty() && self.layer_violations.is_empty()
    }
}

/// Everything discovery found at one revision.
pub struct Org {
    pub stacks: Vec<Stack>,
    pub apps: Vec<App>,
    pub graph: StackGraph,
    pub codeowners: CodeOwners,
    pub warnings: Vec<Warning>,
    /// Stack configs that failed to parse, as syntax errors.
    pub errors: Vec<terragrunt::HclError>,
}

/// Whether a file name makes its directory a stack.
pub fn is_stack_file(name: &str) -> bool {
    name == "terragrunt.hcl"
        || name.ends_with(".tf")
        || name.ends_with(".tf.json")
        || name.ends_with(".tofu")
}

/// Directories directly containing a file, relative to `root`, for every file under `root`.
fn candidate_dirs<'a>(
    files: impl Iterator<Item = &'a str>,
    root: &str,
) -> BTreeMap<String, Vec<&'a str>> {
    let mut dirs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for f in files {
        let dir = path::parent(f);
        if path::is_under(dir, root) {
            dirs.entry(dir.to_string())
                .or_default()
                .push(path::file_name(f));
        }
    }
    dirs
}

fn relative<'a>(dir: &'a str, root: &str) -> &'a str {
    path::strip_dir(dir, root).unwrap_or("")
}

/// Stacks and apps of a revision by id and path only, without evaluating any configuration:
/// enough to tell which units a change deleted.
pub fn unit_ids<'a>(
    config: &OrgConfig,
    all_files: impl Iterator<Item = &'a str>,
) -> (Vec<Unit>, Vec<Unit>) {
    let mut stacks = BTreeMap::new();
    let mut apps = BTreeMap::new();
    let bare = |id: String, dir: &str, env: Option<String>| Unit {
        id,
        path: dir.to_string(),
        env,
        inputs: Vec::new(),
        watch: Vec::new(),
    };
    for file in all_files {
        let dir = path::parent(file);
        let name = path::file_name(file);
        if is_stack_file(name)
            && let Some(c) = path::strip_dir(dir, &config.stacks.root)
                .and_then(|rel| config.stacks.layout.capture(rel))
        {
            let env = c.values.get("env").cloned();
            stacks
                .entry(c.id.clone())
                .or_insert_with(|| bare(c.id, dir, env));
        }
        if (kustomize::is_manifest_name(name) || kustomize::KUSTOMIZATION_FILES.contains(&name))
            && let Some(c) = path::strip_dir(dir, &config.apps.root)
                .and_then(|rel| config.apps.layout.capture(rel))
        {
            let env = config.app_env(&c.values);
            apps.entry(c.id.clone())
                .or_insert_with(|| bare(c.id, dir, env));
        }
    }
    (stacks.into_values().collect(), apps.into_values().collect())
}

/// Load the CODEOWNERS file GitHub would use.
pub fn codeowners(config: &OrgConfig, files: &dyn Tree) -> (CodeOwners, Vec<Warning>) {
    let candidates: Vec<&str> = match &config.owners.codeowners {
        Some(p) => vec![p.as_str()],
        None => CODEOWNERS_PATHS.to_vec(),
    };
    for candidate in candidates {
        if let Some(bytes) = files.read(candidate) {
            let (co, warnings) = CodeOwners::parse(&String::from_utf8_lossy(&bytes));
            let warnings = warnings
                .into_iter()
                .map(|w| Warning {
                    file: candidate.to_string(),
                    line: w.line,
                    col: 1,
                    message: w.message,
                })
                .collect();
            return (co, warnings);
        }
    }
    (CodeOwners::empty(), Vec::new())
}

/// Discover stacks and apps in the tree whose file list is `all_files`.
pub fn discover<'a>(
    config: &OrgConfig,
    files: &dyn Tree,
    all_files: impl Iterator<Item = &'a str> + Clone,
) -> Org {
    let (codeowners, mut warnings) = codeowners(config, files);
    let cache = ModuleCache::new();

    let stack_dirs: Vec<(String, String, BTreeMap<String, String>)> =
        candidate_dirs(all_files.clone(), &config.stacks.root)
            .into_iter()
            .filter(|(_, names)| names.iter().any(|n| is_stack_file(n)))
            .filter_map(|(dir, names)| {
                let caps = config
                    .stacks
                    .layout
                    .capture(relative(&dir, &config.stacks.root))?;
                let representative = names
                    .iter()
                    .find(|n| **n == "terragrunt.hcl")
                    .or(names.first())
                    .copied()
                    .unwrap_or_default();
                Some((dir.clone(), format!("{dir}/{representative}"), caps.values))
            })
            .collect();

    let evaluated: Vec<_> = stack_dirs
        .par_iter()
        .map(|(dir, _, _)| terragrunt::evaluate_stack(dir, files, &cache))
        .collect();

    let mut errors = Vec::new();
    let mut stacks: Vec<Stack> = Vec::with_capacity(stack_dirs.len());
    for ((dir, representative, values), refs) in stack_dirs.into_iter().zip(evaluated) {
        let refs = match refs {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                StackRefs::default()
            }
        };
        let caps = config
            .stacks
            .layout
            .capture(relative(&dir, &config.stacks.root))
            .unwrap_or_default();
        let name = values
            .get("stack")
            .cloned()
            .unwrap_or_else(|| caps.id.clone());
        let env = values.get("env").cloned().unwrap_or_default();
        if !env.is_empty() && config.environment(&env).is_none() {
            warnings.push(Warning {
                file: representative.clone(),
                line: 1,
                col: 1,
                message: format!(
                    "stack {} is in environment `{env}`, which sluice.yaml does not define",
                    caps.id
                ),
            });
        }
        stacks.push(Stack {
            id: caps.id,
            path: dir,
            env,
            region: values.get("region").cloned(),
            layer: config.layer_of(&name).map(|(_, l)| l.to_string()),
            name,
            owners: codeowners.owners_of(&representative).to_vec(),
            depends_on: Vec::new(),
            refs,
        });
    }
    stacks.sort_by(|a, b| a.id.cmp(&b.id));
    let graph = build_graph(config, &mut stacks, &mut warnings);

    let apps = discover_apps(config, files, all_files, &codeowners, &mut warnings);
    for s in &stacks {
        warnings.extend(s.refs.warnings.iter().cloned());
    }
    warnings.sort();
    warnings.dedup();
    Org {
        stacks,
        apps,
        graph,
        codeowners,
        warnings,
        errors,
    }
}

fn build_graph(
    config: &OrgConfig,
    stacks: &mut [Stack],
    warnings: &mut Vec<Warning>,
) -> StackGraph {
    let mut graph = StackGraph::new(stacks.iter().map(|s| s.id.clone()));
    let by_path: HashMap<String, usize> = stacks
        .iter()
        .enumerate()
        .map(|(i, s)| (s.path.clone(), i))
        .collect();
    for (i, stack) in stacks.iter().enumerate() {
        for dep in &stack.refs.dependencies {
            match by_path.get(&dep.dir) {
                Some(&up) => graph.add_edge(i, up),
                None => warnings.push(Warning {
                    file: dep.file.clone(),
                    line: dep.line,
                    col: 1,
                    message: format!(
                        "dependency `{}` of stack {} is not a discovered stack",
                        dep.dir, stack.id
                    ),
                }),
            }
        }
    }
    for explicit in &config.stacks.depends_on {
        let Some(s) = graph.index_of(&explicit.stack) else {
            warnings.push(Warning {
                file: crate::config::FILE_NAME.into(),
                line: explicit.line,
                col: 1,
                message: format!("depends_on names unknown stack `{}`", explicit.stack),
            });
            continue;
        };
        for on in &explicit.on {
            match graph.index_of(on) {
                Some(up) => graph.add_edge(s, up),
                None => warnings.push(Warning {
                    file: crate::config::FILE_NAME.into(),
                    line: explicit.line,
                    col: 1,
                    message: format!("depends_on names unknown stack `{on}`"),
                }),
            }
        }
    }
    for (i, stack) in stacks.iter_mut().enumerate() {
        let mut ups: Vec<String> = graph
            .upstream_of(i)
            .iter()
            .map(|u| graph.id(*u).to_string())
            .collect();
        ups.sort();
        stack.depends_on = ups;
    }
    graph
}

fn discover_apps<'a>(
    config: &OrgConfig,
    files: &dyn Tree,
    all_files: impl Iterator<Item = &'a str>,
    codeowners: &CodeOwners,
    warnings: &mut Vec<Warning>,
) -> Vec<App> {
    let mut apps = Vec::new();
    for (dir, names) in candidate_dirs(all_files, &config.apps.root) {
        let Some(caps) = config
            .apps
            .layout
            .capture(relative(&dir, &config.apps.root))
        else {
            continue;
        };
        let Some(kind) = kustomize::kind_of(&dir, files) else {
            continue;
        };
        let kustomize::AppRefs {
            refs,
            warnings: w,
            broken,
        } = kustomize::app_refs_checked(&dir, files);
        warnings.extend(w);
        let representative = format!("{dir}/{}", names.first().copied().unwrap_or_default());
        apps.push(App {
            env: config.app_env(&caps.values),
            cluster: caps.values.get("cluster").cloned(),
            id: caps.id,
            path: dir,
            kind,
            owners: codeowners.owners_of(&representative).to_vec(),
            refs,
            broken_refs: broken,
        });
    }
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    apps
}

impl Org {
    /// Cycles and layer-rule violations in the stack graph.
    pub fn graph_errors(&self, config: &OrgConfig) -> GraphErrors {
        GraphErrors {
            cycles: self.graph.cycles(),
            layer_violations: self
                .layer_violations(config)
                .iter()
                .map(LayerViolation::to_string)
                .collect(),
        }
    }

    /// Edges where a stack depends on a stack of a later layer (see [`Org::graph_errors`]).
    pub fn layer_violations(&self, config: &OrgConfig) -> Vec<LayerViolation> {
        let layers: Vec<Option<(usize, &str)>> = self
            .stacks
            .iter()
            .map(|s| config.layer_of(&s.name))
            .collect();
        self.graph.layer_violations(&layers)
    }

    /// Where stack `from` declares its dependency on stack `to`: the file and line of the
    /// `dependency` (or `dependencies`) block, when a Terragrunt config declares it.
    pub fn dependency_position(&self, from: &str, to: &str) -> Option<(&str, u32)> {
        let to = self.stacks.iter().find(|s| s.id == to)?;
        let from = self.stacks.iter().find(|s| s.id == from)?;
        from.refs
            .dependencies
            .iter()
            .find(|d| d.dir == to.path)
            .map(|d| (d.file.as_str(), d.line))
    }

    /// Stacks as units for affected detection (indexed like `self.graph`).
    pub fn stack_units(&self, config: &OrgConfig) -> Vec<Unit> {
        self.stacks
            .iter()
            .map(|s| Unit {
                id: s.id.clone(),
                path: s.path.clone(),
                env: Some(s.env.clone()),
                inputs: s
                    .refs
                    .inputs
                    .iter()
                    .filter(|i| !path::is_under(&i.path, &s.path))
                    .map(|i| UnitInput {
                        kind: match i.kind {
                            InputKind::Source | InputKind::Module => ReasonKind::Module,
                            InputKind::Include | InputKind::Read | InputKind::VarFile => {
                                ReasonKind::Include
                            }
                        },
                        path: i.path.clone(),
                        is_dir: i.is_dir,
                        via: i.via.clone(),
                    })
                    .collect(),
                watch: config::watch_paths(&config.stacks.watch, &s.id),
            })
            .collect()
    }

    pub fn app_units(&self, config: &OrgConfig) -> Vec<Unit> {
        self.apps
            .iter()
            .map(|a| Unit {
                id: a.id.clone(),
                path: a.path.clone(),
                env: a.env.clone(),
                inputs: a
                    .refs
                    .iter()
                    .filter(|r| !path::is_under(&r.path, &a.path))
                    .map(|r| UnitInput {
                        kind: ReasonKind::Include,
                        path: r.path.clone(),
                        is_dir: r.is_dir,
                        via: r.via.clone(),
                    })
                    .collect(),
                watch: config::watch_paths(&config.apps.watch, &a.id),
            })
            .collect()
    }

    /// Dependencies on directories that are not stacks at this revision, as (stack index,
    /// directory), for affected detection to match against deleted stacks.
    pub fn dangling_dependencies(&self) -> Vec<(usize, String)> {
        let paths: std::collections::HashSet<&str> =
            self.stacks.iter().map(|s| s.path.as_str()).collect();
        self.stacks
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.refs.dependencies.iter().map(move |d| (i, d.dir.clone())))
            .filter(|(_, dir)| !paths.contains(dir.as_str()))
            .collect()
    }

    /// The environment of the stack or app that contains `file`, if any.
    pub fn env_of(&self, file: &str) -> Option<String> {
        self.stacks
            .iter()
            .find(|s| path::is_under(file, &s.path))
            .map(|s| s.env.clone())
            .or_else(|| {
                self.apps
                    .iter()
                    .find(|a| path::is_under(file, &a.path))
                    .and_then(|a| a.env.clone())
            })
    }
}
