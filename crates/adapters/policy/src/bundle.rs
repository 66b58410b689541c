//! Policy bundles: a folder of Rego modules with JSON/YAML data, read from disk or from a git
//! snapshot (the org's `policy-library` folder), identified by a content digest.
//!
//! Layout follows OPA: `*.rego` anywhere (files ending `_test.rego` hold tests and are left out
//! of evaluation), `data.json` / `data.yaml` / `data.yml` merged into `data` at their folder
//! path, and an optional `.manifest` (JSON) at the root whose `rego_version` (0 or 1) and
//! `file_rego_versions` (glob → version) select the Rego dialect. Everything else in the folder
//! (READMEs, fixtures) is ignored and does not change the bundle's version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_model::glob::GlobList;
use sluice_model::tree::Tree;

use crate::error::PolicyError;

/// Upper bounds while reading a bundle, so that a hostile or mistaken folder fails fast.
pub const MAX_BUNDLE_FILES: usize = 5_000;
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// Per policy or data file (regorus refuses Rego files above 1 MiB on its own).
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Where a bundle came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Shipped inside the sluice binary.
    Builtin,
    /// A folder on disk.
    Dir(PathBuf),
    /// A folder of a git commit.
    Git { commit: String, dir: String },
    /// Assembled in memory by a caller (tests, other stages).
    Memory,
}

/// One file of a bundle; `path` is relative to the bundle root, `/`-separated.
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub path: String,
    pub content: Arc<[u8]>,
}

/// The Rego dialect of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RegoVersion {
    V0,
    V1,
}

/// The parts of OPA's `.manifest` that sluice honours.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub rego_version: Option<RegoVersion>,
    /// Glob (over the bundle-relative path) → version, first match wins.
    pub file_rego_versions: Vec<(String, RegoVersion)>,
    pub revision: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    /// A short display name (`builtin`, `policy-library`, a folder name).
    pub name: String,
    pub origin: Origin,
    /// Sorted by path: `.rego` files, data files and the `.manifest`.
    pub files: Vec<BundleFile>,
    pub manifest: Manifest,
    /// Overrides the manifest's default dialect (an API flag, e.g. `--rego-v0`).
    pub rego_v0: Option<bool>,
    /// `sha256:<hex>` over the sorted paths and contents of `files`.
    pub digest: String,
}

/// The kinds of files a bundle is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Policy,
    Test,
    Data,
    Manifest,
}

pub fn file_kind(path: &str) -> Option<FileKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path == ".manifest" {
        Some(FileKind::Manifest)
    } else if name.ends_with("_test.rego") {
        Some(FileKind::Test)
    } else if name.ends_with(".rego") {
        Some(FileKind::Policy)
    } else if matches!(name, "data.json" | "data.yaml" | "data.yml") {
        Some(FileKind::Data)
    } else {
        None
    }
}

/// `sha256:<hex>` over `(path, length, content)` of each file in path order. The framing makes
/// the digest unambiguous: moving bytes between a path and a content cannot collide.
pub fn content_digest(files: &[BundleFile]) -> String {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        h.update((f.path.len() as u64).to_be_bytes());
        h.update(f.path.as_bytes());
        h.update((f.content.len() as u64).to_be_bytes());
        h.update(&f.content);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl Bundle {
    /// Assemble a bundle from files (only the bundle's kinds of files are kept).
    pub fn from_files(
        name: impl Into<String>,
        origin: Origin,
        files: Vec<BundleFile>,
    ) -> Result<Bundle, PolicyError> {
        let name = name.into();
        let mut files: Vec<BundleFile> = files
            .into_iter()
            .filter(|f| file_kind(&f.path).is_some())
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.len() > MAX_BUNDLE_FILES {
            return Err(PolicyError::Bundle {
                bundle: name,
                message: format!(
                    "{} policy and data files, more than the limit of {MAX_BUNDLE_FILES}",
                    files.len()
                ),
            });
        }
        let total: usize = files.iter().map(|f| f.content.len()).sum();
        if total > MAX_BUNDLE_BYTES {
            return Err(PolicyError::Bundle {
                bundle: name,
                message: format!(
                    "{total} bytes of policy and data, more than the limit of {MAX_BUNDLE_BYTES}"
                ),
            });
        }
        if let Some(f) = files.iter().find(|f| f.content.len() > MAX_FILE_BYTES) {
            return Err(PolicyError::Bundle {
                bundle: name,
                message: format!(
                    "{}: {} bytes, more than the per-file limit of {MAX_FILE_BYTES}",
                    f.path,
                    f.content.len()
                ),
            });
        }
        let manifest = match files.iter().find(|f| f.path == ".manifest") {
            Some(f) => parse_manifest(&name, &f.content)?,
            None => Manifest::default(),
        };
        let digest = content_digest(&files);
        Ok(Bundle {
            name,
            origin,
            files,
            manifest,
            rego_v0: None,
            digest,
        })
    }

    /// Read a bundle from a folder on disk. Symlinks are not followed (a bundle cannot pull
    /// in files from outside its folder) and hidden folders (`.git`) are skipped.
    pub fn from_dir(dir: &Path) -> Result<Bundle, PolicyError> {
        let meta = std::fs::metadata(dir).map_err(|e| PolicyError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        if !meta.is_dir() {
            return Err(PolicyError::Io {
                path: dir.display().to_string(),
                message: "not a directory".into(),
            });
        }
        let mut files = Vec::new();
        let mut budget = MAX_BUNDLE_BYTES;
        walk(dir, "", &mut files, &mut budget)?;
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Bundle::from_files(name, Origin::Dir(dir.to_path_buf()), files)
    }

    /// Read a bundle from folder `dir` of a git snapshot; its version carries the commit.
    pub fn from_snapshot(snapshot: &dyn Tree, dir: &str) -> Result<Bundle, PolicyError> {
        let dir = dir.trim_matches('/');
        let prefix_len = if dir.is_empty() { 0 } else { dir.len() + 1 };
        let mut files = Vec::new();
        let paths: Vec<&str> = snapshot
            .files_under(dir)
            .filter(|p| file_kind(&p[prefix_len..]).is_some())
            .collect();
        if paths.len() > MAX_BUNDLE_FILES {
            return Err(PolicyError::Bundle {
                bundle: dir.to_string(),
                message: format!(
                    "{} policy and data files, more than the limit of {MAX_BUNDLE_FILES}",
                    paths.len()
                ),
            });
        }
        for path in paths {
            let content = snapshot
                .read_file(path)
                .map_err(|e| PolicyError::Io {
                    path: path.to_string(),
                    message: e.to_string(),
                })?
                .unwrap_or_else(|| Arc::from(&b""[..]));
            files.push(BundleFile {
                path: path[prefix_len..].to_string(),
                content,
            });
        }
        let name = if dir.is_empty() {
            "policy".to_string()
        } else {
            dir.rsplit('/').next().unwrap_or(dir).to_string()
        };
        Bundle::from_files(
            name,
            Origin::Git {
                commit: snapshot.revision(),
                dir: dir.to_string(),
            },
            files,
        )
    }

    /// Force the default dialect (`true` = Rego v0), overriding the manifest.
    pub fn with_rego_v0(mut self, v0: bool) -> Bundle {
        self.rego_v0 = Some(v0);
        self
    }

    /// `<commit>+sha256:<hex>` when read from git, else the content digest alone.
    pub fn version(&self) -> String {
        match &self.origin {
            Origin::Git { commit, .. } => format!("{commit}+{}", self.digest),
            _ => self.digest.clone(),
        }
    }

    pub fn commit(&self) -> Option<&str> {
        match &self.origin {
            Origin::Git { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// Where a bundle-relative path lives, for messages (`policy-library/aws/s3.rego`).
    pub fn display_path(&self, path: &str) -> String {
        match &self.origin {
            Origin::Builtin => format!("builtin/{path}"),
            Origin::Dir(d) => d.join(path).display().to_string(),
            Origin::Git { dir, .. } if !dir.is_empty() => format!("{dir}/{path}"),
            _ => path.to_string(),
        }
    }

    /// The dialect of one module: API flag, then `file_rego_versions`, then `rego_version`,
    /// then v1 (OPA 1.x's default).
    pub fn rego_version_of(&self, path: &str) -> RegoVersion {
        if let Some(v0) = self.rego_v0 {
            return if v0 { RegoVersion::V0 } else { RegoVersion::V1 };
        }
        for (glob, v) in &self.manifest.file_rego_versions {
            if GlobList::new(&[glob.as_str()]).is_ok_and(|g| g.is_match(path)) {
                return *v;
            }
        }
        self.manifest.rego_version.unwrap_or(RegoVersion::V1)
    }

    pub fn files_of(&self, kind: FileKind) -> impl Iterator<Item = &BundleFile> {
        self.files
            .iter()
            .filter(move |f| file_kind(&f.path) == Some(kind))
    }

    /// The merged data document of the bundle's data files.
    pub fn data(&self) -> Result<serde_json::Value, PolicyError> {
        let mut root = serde_json::Value::Object(serde_json::Map::new());
        for f in self.files_of(FileKind::Data) {
            let value = parse_data_file(self, f)?;
            let dir = sluice_model::path::parent(&f.path);
            let components: Vec<&str> = if dir.is_empty() {
                if !value.is_object() {
                    return Err(PolicyError::Data {
                        file: self.display_path(&f.path),
                        message: "a data file at the bundle root must hold a mapping".into(),
                    });
                }
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            merge_at(&mut root, &components, value).map_err(|at| PolicyError::Data {
                file: self.display_path(&f.path),
                message: format!("conflicts with other data at `data.{at}`"),
            })?;
        }
        Ok(root)
    }
}

fn walk(
    root: &Path,
    rel: &str,
    out: &mut Vec<BundleFile>,
    budget: &mut usize,
) -> Result<(), PolicyError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let io = |e: std::io::Error| PolicyError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().map_err(io)?;
        if ft.is_dir() {
            if !name.starts_with('.') {
                walk(root, &path, out, budget)?;
            }
        } else if ft.is_file() && file_kind(&path).is_some() {
            let full = root.join(&path);
            let content = std::fs::read(&full).map_err(|e| PolicyError::Io {
                path: full.display().to_string(),
                message: e.to_string(),
            })?;
            if content.len() > *budget {
                return Err(PolicyError::Bundle {
                    bundle: root.display().to_string(),
                    message: format!(
                        "more than {MAX_BUNDLE_BYTES} bytes of policy and data (at {path})"
                    ),
                });
            }
            *budget -= content.len();
            out.push(BundleFile {
                path,
                content: Arc::from(content),
            });
            if out.len() > MAX_BUNDLE_FILES {
                return Err(PolicyError::Bundle {
                    bundle: root.display().to_string(),
                    message: format!("more than {MAX_BUNDLE_FILES} policy and data files"),
                });
            }
        }
    }
    Ok(())
}

fn parse_manifest(bundle: &str, content: &[u8]) -> Result<Manifest, PolicyError> {
    let err = |message: String| PolicyError::Data {
        file: format!("{bundle}/.manifest"),
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(content)
        .map_err(|e| err(format!("{}:{}: invalid JSON: {e}", e.line(), e.column())))?;
    let Some(obj) = value.as_object() else {
        return Err(err("expected a JSON object".into()));
    };
    let version = |v: &serde_json::Value, field: &str| -> Result<RegoVersion, PolicyError> {
        match v.as_i64() {
            Some(0) => Ok(RegoVersion::V0),
            Some(1) => Ok(RegoVersion::V1),
            _ => Err(err(format!("`{field}`: expected 0 or 1, found {v}"))),
        }
    };
    let mut m = Manifest::default();
    if let Some(v) = obj.get("rego_version") {
        m.rego_version = Some(version(v, "rego_version")?);
    }
    if let Some(v) = obj.get("file_rego_versions") {
        let Some(map) = v.as_object() else {
            return Err(err("`file_rego_versions`: expected an object".into()));
        };
        for (glob, v) in map {
            GlobList::new(&[glob.as_str()])
                .map_err(|e| err(format!("`file_rego_versions`: {e}")))?;
            m.file_rego_versions.push((
                glob.clone(),
                version(v, &format!("file_rego_versions.{glob}"))?,
            ));
        }
    }
    if let Some(v) = obj.get("revision") {
        m.revision = Some(
            v.as_str()
                .ok_or_else(|| err("`revision`: expected a string".into()))?
                .to_string(),
        );
    }
    Ok(m)
}

fn parse_data_file(bundle: &Bundle, f: &BundleFile) -> Result<serde_json::Value, PolicyError> {
    let file = bundle.display_path(&f.path);
    let text = std::str::from_utf8(&f.content).map_err(|e| PolicyError::Data {
        file: file.clone(),
        message: format!("not UTF-8: {e}"),
    })?;
    if f.path.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| PolicyError::Data {
            file,
            message: format!("{}:{}: invalid JSON: {e}", e.line(), e.column()),
        })
    } else {
        let node = sluice_model::yaml::parse_one(text).map_err(|e| PolicyError::Data {
            file,
            message: format!("{}:{}: invalid YAML: {}", e.line, e.col, e.message),
        })?;
        Ok(node.to_json())
    }
}

/// Deep-merge `value` into `root` at `path`; on a conflict, the dotted path where it occurred.
fn merge_at(
    root: &mut serde_json::Value,
    path: &[&str],
    value: serde_json::Value,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return deep_merge(root, value, &mut Vec::new());
    };
    let mut cur = root;
    let mut walked: Vec<String> = Vec::new();
    for c in parents {
        walked.push(c.to_string());
        let obj = cur.as_object_mut().ok_or_else(|| walked.join("."))?;
        cur = obj
            .entry(c.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    walked.push(last.to_string());
    let obj = cur.as_object_mut().ok_or_else(|| walked.join("."))?;
    match obj.get_mut(*last) {
        Some(existing) => deep_merge(existing, value, &mut walked),
        None => {
            obj.insert(last.to_string(), value);
            Ok(())
        }
    }
}

fn deep_merge(
    into: &mut serde_json::Value,
    value: serde_json::Value,
    at: &mut Vec<String>,
) -> Result<(), String> {
    match (into, value) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => {
                        at.push(k);
                        deep_merge(existing, v, at)?;
                        at.pop();
                    }
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        (a, b) if *a == b => Ok(()),
        _ => Err(at.join(".")),
    }
}

/// Bundle-relative data paths and their dotted `data` location, for `sluice policy` listings.
pub fn data_locations(bundle: &Bundle) -> BTreeMap<String, String> {
    bundle
        .files_of(FileKind::Data)
        .map(|f| {
            let dir = sluice_model::path::parent(&f.path);
            let at = if dir.is_empty() {
                "data".to_string()
            } else {
                format!("data.{}", dir.replace('/', "."))
            };
            (f.path.clone(), at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> BundleFile {
        BundleFile {
            path: path.into(),
            content: Arc::from(content.as_bytes()),
        }
    }

    #[test]
    fn digest_depends_on_paths_and_contents_not_order() {
        let a = vec![file("a.rego", "package a"), file("b/data.json", "{}")];
        let b = vec![file("b/data.json", "{}"), file("a.rego", "package a")];
        assert_eq!(content_digest(&a), content_digest(&b));
        let renamed = vec![file("c.rego", "package a"), file("b/data.json", "{}")];
        assert_ne!(content_digest(&a), content_digest(&renamed));
        let edited = vec![file("a.rego", "package a "), file("b/data.json", "{}")];
        assert_ne!(content_digest(&a), content_digest(&edited));
        // Framing: moving a byte from the path into the content changes the digest.
        assert_ne!(
            content_digest(&[file("ab", "c")]),
            content_digest(&[file("a", "bc")])
        );
    }

    #[test]
    fn only_bundle_files_count() {
        let b = Bundle::from_files(
            "t",
            Origin::Memory,
            vec![
                file("README.md", "hi"),
                file("p.rego", "package main"),
                file("p_test.rego", "package main"),
                file("x/data.yaml", "a: 1"),
                file("x/other.yaml", "a: 1"),
            ],
        )
        .unwrap();
        let paths: Vec<&str> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["p.rego", "p_test.rego", "x/data.yaml"]);
    }

    #[test]
    fn data_merges_at_folder_paths_and_reports_conflicts() {
        let b = Bundle::from_files(
            "t",
            Origin::Memory,
            vec![
                file("data.json", r#"{"x": {"keep": 1}, "top": true}"#),
                file("x/data.yaml", "limit: 7\nnames: [a, b]\n"),
                file("x/y/data.json", "[1, 2]"),
            ],
        )
        .unwrap();
        assert_eq!(
            b.data().unwrap(),
            serde_json::json!({"top": true, "x": {"keep": 1, "limit": 7, "names": ["a", "b"], "y": [1, 2]}})
        );
        let clash = Bundle::from_files(
            "t",
            Origin::Memory,
            vec![
                file("data.json", r#"{"x": {"limit": 1}}"#),
                file("x/data.json", r#"{"limit": 2}"#),
            ],
        )
        .unwrap();
        let e = clash.data().unwrap_err().to_string();
        assert!(
            e.contains("x/data.json") && e.contains("data.x.limit"),
            "{e}"
        );
        let bad = Bundle::from_files("t", Origin::Memory, vec![file("x/data.yaml", "a: [1, 2\n")])
            .unwrap();
        let e = bad.data().unwrap_err().to_string();
        assert!(
            e.contains("x/data.yaml") && e.contains("invalid YAML"),
            "{e}"
        );
    }

    #[test]
    fn manifest_selects_rego_versions() {
        let b = Bundle::from_files(
            "t",
            Origin::Memory,
            vec![
                file(
                    ".manifest",
                    r#"{"rego_version": 0, "file_rego_versions": {"v1/**": 1}}"#,
                ),
                file("a.rego", ""),
            ],
        )
        .unwrap();
        assert_eq!(b.rego_version_of("a.rego"), RegoVersion::V0);
        assert_eq!(b.rego_version_of("v1/x/a.rego"), RegoVersion::V1);
        assert_eq!(
            b.clone().with_rego_v0(false).rego_version_of("a.rego"),
            RegoVersion::V1
        );
        let e = Bundle::from_files(
            "t",
            Origin::Memory,
            vec![file(".manifest", r#"{"rego_version": 2}"#)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rego_version") && e.contains("0 or 1"), "{e}");
    }

    #[test]
    fn reads_a_folder_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("lib/a.rego"), "package lib").unwrap();
        std::fs::write(dir.path().join(".git/x.rego"), "package git").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.rego"), "package secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.rego"),
            dir.path().join("s.rego"),
        )
        .unwrap();
        let b = Bundle::from_dir(dir.path()).unwrap();
        let paths: Vec<&str> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["lib/a.rego"]);
        assert_eq!(b.version(), b.digest);
    }
}
