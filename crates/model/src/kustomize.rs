//! What a Kubernetes app's desired state is built from: the local files and folders a
//! `kustomization.yaml` (or a Helm chart) references, followed transitively, so that a change
//! to a shared base outside the app's folder marks the app affected.

use std::collections::BTreeSet;

use crate::tree::{Tree, Warning};
use crate::yaml::{self, Node};

pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How an app's manifests are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    Kustomize,
    Helm,
    Plain,
}

/// A local file or folder an app's build reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppRef {
    pub path: String,
    pub is_dir: bool,
    /// The kustomization or chart file that references it.
    pub via: String,
}

pub fn kind_of(dir: &str, files: &dyn Tree) -> Option<AppKind> {
    let names = files.list_dir(dir);
    if names
        .iter()
        .any(|n| KUSTOMIZATION_FILES.contains(&n.as_str()))
    {
        Some(AppKind::Kustomize)
    } else if names.iter().any(|n| n == "Chart.yaml") {
        Some(AppKind::Helm)
    } else if names.iter().any(|n| is_manifest_name(n)) {
        Some(AppKind::Plain)
    } else {
        None
    }
}

pub fn is_manifest_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
}

/// Every local file and folder the app at `dir` is built from (including ones inside `dir`),
/// with warnings for references that cannot be followed.
pub fn app_refs(dir: &str, files: &dyn Tree) -> (Vec<AppRef>, Vec<Warning>) {
    let r = app_refs_checked(dir, files);
    (r.refs, r.warnings)
}

/// What [`app_refs_checked`] found for one app.
#[derive(Debug, Clone, Default)]
pub struct AppRefs {
    pub refs: Vec<AppRef>,
    /// Every reference that could not be followed, and kustomization or chart files that do
    /// not parse.
    pub warnings: Vec<Warning>,
    /// The subset of `warnings` that makes the build fail for certain: a local reference that
    /// does not exist at the revision or that leaves the repository (Kustomize and Helm
    /// refuse both), at the kustomization or chart line that names it.
    pub broken: Vec<Warning>,
}

/// [`app_refs`], telling references that break the app's build from the rest.
pub fn app_refs_checked(dir: &str, files: &dyn Tree) -> AppRefs {
    let mut walk = Walk {
        files,
        refs: BTreeSet::new(),
        warnings: Vec::new(),
        broken: Vec::new(),
        visited: BTreeSet::new(),
    };
    walk.dir(dir);
    AppRefs {
        refs: walk.refs.into_iter().collect(),
        warnings: walk.warnings,
        broken: walk.broken,
    }
}

struct Walk<'a> {
    files: &'a dyn Tree,
    refs: BTreeSet<AppRef>,
    warnings: Vec<Warning>,
    broken: Vec<Warning>,
    visited: BTreeSet<String>,
}

/// Kustomization fields whose values are paths (plain strings, or objects with `path`).
const PATH_LISTS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "crds",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
    "configurations",
];
const OBJECT_LISTS: &[&str] = &["patches", "patchesJson6902", "replacements"];
const GENERATORS: &[&str] = &["configMapGenerator", "secretGenerator"];

impl Walk<'_> {
    fn dir(&mut self, dir: &str) {
        if !self.visited.insert(dir.to_string()) {
            return;
        }
        let names = self.files.list_dir(dir);
        if let Some(name) = names
            .iter()
            .find(|n| KUSTOMIZATION_FILES.contains(&n.as_str()))
        {
            let file = join_name(dir, name);
            self.kustomization(dir, &file);
        } else if names.iter().any(|n| n == "Chart.yaml") {
            self.chart(dir);
        }
    }

    fn warn(&mut self, file: &str, node: Option<&Node>, message: String) {
        self.warnings.push(Warning {
            file: file.to_string(),
            line: node.map_or(1, |n| n.line),
            col: node.map_or(1, |n| n.col),
            message,
        });
    }

    /// A reference that breaks the build: a warning, and remembered as broken.
    fn broken(&mut self, file: &str, node: &Node, message: String) {
        self.warn(file, Some(node), message);
        self.broken
            .push(self.warnings.last().expect("just pushed").clone());
    }

    fn reference(&mut self, dir: &str, via: &str, node: &Node) {
        let Some(raw) = node.as_str() else { return };
        // `patchesStrategicMerge` also takes inline patches: YAML text, not a path.
        if is_remote(raw) || raw.contains('\n') || raw.trim().is_empty() {
            return;
        }
        let Some(path) = crate::path::join(dir, raw) else {
            self.broken(
                via,
                node,
                format!("reference `{raw}` escapes the repository; not followed"),
            );
            return;
        };
        if self.files.is_dir(&path) {
            self.refs.insert(AppRef {
                path: path.clone(),
                is_dir: true,
                via: via.to_string(),
            });
            self.dir(&path);
        } else if self.files.is_file(&path) {
            self.refs.insert(AppRef {
                path,
                is_dir: false,
                via: via.to_string(),
            });
        } else {
            self.broken(
                via,
                node,
                format!("reference `{raw}` does not exist at this revision"),
            );
        }
    }

    fn kustomization(&mut self, dir: &str, file: &str) {
        self.refs.insert(AppRef {
            path: file.to_string(),
            is_dir: false,
            via: file.to_string(),
        });
        let Some(bytes) = self.files.read(file) else {
            return;
        };
        let text = String::from_utf8_lossy(&bytes);
        let doc = match yaml::parse_one(&text) {
            Ok(d) => d,
            Err(e) => {
                self.warnings.push(Warning {
                    file: file.to_string(),
                    line: e.line,
                    col: e.col,
                    message: e.message,
                });
                return;
            }
        };
        for key in PATH_LISTS {
            for item in doc.get(key).and_then(Node::as_seq).unwrap_or_default() {
                match item.get("path") {
                    Some(p) => self.reference(dir, file, p),
                    None => self.reference(dir, file, item),
                }
            }
        }
        for key in OBJECT_LISTS {
            for item in doc.get(key).and_then(Node::as_seq).unwrap_or_default() {
                if let Some(p) = item.get("path") {
                    self.reference(dir, file, p);
                }
                if let Some(p) = item.get("source").and_then(|s| s.get("path")) {
                    self.reference(dir, file, p);
                }
            }
        }
        for key in GENERATORS {
            for generator in doc.get(key).and_then(Node::as_seq).unwrap_or_default() {
                for field in ["files", "envs"] {
                    for f in generator
                        .get(field)
                        .and_then(Node::as_seq)
                        .unwrap_or_default()
                    {
                        self.generator_file(dir, file, f);
                    }
                }
                if let Some(env) = generator.get("env") {
                    self.generator_file(dir, file, env);
                }
            }
        }
        for chart in doc
            .get("helmCharts")
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            if let Some(v) = chart.get("valuesFile") {
                self.reference(dir, file, v);
            }
            for v in chart
                .get("additionalValuesFiles")
                .and_then(Node::as_seq)
                .unwrap_or_default()
            {
                self.reference(dir, file, v);
            }
        }
        if let Some(p) = doc.get("openapi").and_then(|o| o.get("path")) {
            self.reference(dir, file, p);
        }
    }

    /// Generator entries are `path`, `key=path` or `key=value` literals (`literals` is separate).
    fn generator_file(&mut self, dir: &str, file: &str, node: &Node) {
        let Some(raw) = node.as_str() else { return };
        let path = raw.split_once('=').map_or(raw, |(_, p)| p);
        let synthetic = Node {
            value: yaml::Value::Str(path.to_string()),
            line: node.line,
            col: node.col,
        };
        self.reference(dir, file, &synthetic);
    }

    /// Helm: `dependencies[].repository: file://../lib` and the chart's own values files.
    fn chart(&mut self, dir: &str) {
        let file = join_name(dir, "Chart.yaml");
        let Some(bytes) = self.files.read(&file) else {
            return;
        };
        let text = String::from_utf8_lossy(&bytes);
        let doc = match yaml::parse_one(&text) {
            Ok(d) => d,
            Err(e) => {
                self.warnings.push(Warning {
                    file,
                    line: e.line,
                    col: e.col,
                    message: e.message,
                });
                return;
            }
        };
        for dep in doc
            .get("dependencies")
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            if let Some(repo) = dep.get("repository")
                && let Some(local) = repo.as_str().and_then(|r| r.strip_prefix("file://"))
            {
                let synthetic = Node {
                    value: yaml::Value::Str(local.to_string()),
                    line: repo.line,
                    col: repo.col,
                };
                self.reference(dir, &file, &synthetic);
            }
        }
    }
}

fn join_name(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Kustomize accepts URLs and go-getter style remote bases; they are not files of this repo.
fn is_remote(raw: &str) -> bool {
    raw.contains("://")
        || raw.starts_with("github.com/")
        || raw.starts_with("gitlab.com/")
        || raw.starts_with("bitbucket.org/")
        || raw.starts_with("git@")
        || raw.contains("?ref=")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    struct Mem(BTreeMap<String, String>);

    impl Tree for Mem {
        fn revision(&self) -> String {
            "memory".to_string()
        }
        fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
            Box::new(
                self.0
                    .keys()
                    .filter(move |k| crate::path::is_under(k, dir) && *k != dir)
                    .map(String::as_str),
            )
        }
        fn read(&self, path: &str) -> Option<Arc<[u8]>> {
            self.0.get(path).map(|s| Arc::from(s.as_bytes()))
        }
        fn is_file(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn is_dir(&self, path: &str) -> bool {
            self.0
                .keys()
                .any(|k| crate::path::is_under(k, path) && k != path)
        }
        fn list_dir(&self, dir: &str) -> Vec<String> {
            self.0
                .keys()
                .filter(|k| crate::path::parent(k) == dir)
                .map(|k| k.rsplit('/').next().unwrap().to_string())
                .collect()
        }
    }

    fn mem(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect())
    }

    #[test]
    fn follows_bases_components_and_generators() {
        let repo = mem(&[
            (
                "apps/pay/kustomization.yaml",
                "resources:\n  - ../../base/pay\n  - svc.yaml\n  - https://github.com/x/y//z?ref=v1\ncomponents:\n  - ../../components/tls\nconfigMapGenerator:\n  - name: c\n    files:\n      - conf=../../shared/app.conf\npatches:\n  - path: patch.yaml\n",
            ),
            ("apps/pay/svc.yaml", "kind: Service\n"),
            ("apps/pay/patch.yaml", "kind: Deployment\n"),
            ("base/pay/kustomization.yaml", "resources: [deploy.yaml]\n"),
            ("base/pay/deploy.yaml", "kind: Deployment\n"),
            ("components/tls/kustomization.yaml", "kind: Component\n"),
            ("shared/app.conf", "x=1\n"),
        ]);
        let (refs, warnings) = app_refs("apps/pay", &repo);
        assert!(warnings.is_empty(), "{warnings:?}");
        let paths: Vec<&str> = refs.iter().map(|r| r.path.as_str()).collect();
        for want in [
            "base/pay",
            "base/pay/deploy.yaml",
            "components/tls",
            "shared/app.conf",
            "apps/pay/patch.yaml",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert_eq!(kind_of("apps/pay", &repo), Some(AppKind::Kustomize));
    }

    #[test]
    fn missing_and_escaping_references_warn() {
        let repo = mem(&[(
            "a/kustomization.yaml",
            "resources:\n  - ../../../etc\n  - gone.yaml\n",
        )]);
        let (_, warnings) = app_refs("a", &repo);
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].line, 2);
        assert!(warnings[0].message.contains("escapes"));
        assert_eq!(warnings[1].line, 3);
        assert_eq!(app_refs_checked("a", &repo).broken, warnings);
    }

    #[test]
    fn every_kind_of_missing_reference_is_broken_at_its_line() {
        let repo = mem(&[
            (
                "app/kustomization.yaml",
                "resources:\n  - deploy.yaml\n  - gone.yaml\ncomponents:\n  - ../components/gone\npatches:\n  - path: gone-patch.yaml\npatchesStrategicMerge:\n  - |-\n    kind: Deployment\n    metadata: { name: x }\nconfigMapGenerator:\n  - name: c\n    files:\n      - conf=gone.conf\n    envs: [gone.env]\nhelmCharts:\n  - name: x\n    valuesFile: gone-values.yaml\n",
            ),
            ("app/deploy.yaml", "kind: Deployment\n"),
            (
                "chart/Chart.yaml",
                "name: c\ndependencies:\n  - name: lib\n    repository: file://../lib\n",
            ),
        ]);
        let r = app_refs_checked("app", &repo);
        let at: Vec<(u32, &str)> = r
            .broken
            .iter()
            .map(|w| (w.line, w.message.split('`').nth(1).unwrap()))
            .collect();
        assert_eq!(
            at,
            [
                (3, "gone.yaml"),
                (5, "../components/gone"),
                (7, "gone-patch.yaml"),
                (15, "gone.conf"),
                (16, "gone.env"),
                (19, "gone-values.yaml"),
            ]
        );
        // The inline patch is not a path; the existing resource is fine.
        assert_eq!(r.warnings.len(), r.broken.len());
        let chart = app_refs_checked("chart", &repo);
        assert_eq!(chart.broken.len(), 1, "{:?}", chart.broken);
        assert_eq!(chart.broken[0].line, 4);
    }
}
