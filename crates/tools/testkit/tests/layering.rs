//! The crate layering rule of DESIGN.md §12, read off every crate's `Cargo.toml`: `model`
//! depends on no sluice crate; adapters only on `model` (the store also on `evidence`, for
//! its hash types); services on adapters and other services, never on a surface; surfaces on
//! anything but the test kit; the test kit is a dev-dependency only. A new dependency that
//! breaks the rule fails here, before it turns into a cycle or a leaky adapter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a crate sits, from its folder under `crates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Model,
    Adapter,
    Service,
    Surface,
    Tool,
}

struct Crate {
    name: String,
    layer: Layer,
    manifest: PathBuf,
    /// Sluice crates under `[dependencies]` (product code).
    deps: Vec<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn sluice_deps(table: Option<&toml::Value>) -> Vec<String> {
    table
        .and_then(toml::Value::as_table)
        .map(|t| {
            t.keys()
                .filter(|k| k.starts_with("sluice-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn read_crate(dir: &Path, layer: Layer) -> Crate {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let doc: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let name = doc["package"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no package name", manifest.display()))
        .to_string();
    Crate {
        name,
        layer,
        deps: sluice_deps(doc.get("dependencies")),
        manifest,
    }
}

fn workspace_crates() -> Vec<Crate> {
    let root = workspace_root().join("crates");
    let mut crates = vec![read_crate(&root.join("model"), Layer::Model)];
    for (folder, layer) in [
        ("adapters", Layer::Adapter),
        ("services", Layer::Service),
        ("surfaces", Layer::Surface),
        ("tools", Layer::Tool),
    ] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|e| panic!("crates/{folder}: {e}"))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        crates.extend(dirs.iter().map(|d| read_crate(d, layer)));
    }
    crates
}

/// Why `from` may not depend on `to`, or `None` when the rule allows it.
fn forbidden(from: &Crate, to: &Crate) -> Option<&'static str> {
    if to.name == "sluice-testkit" {
        return Some("the test kit is a dev-dependency only");
    }
    match (from.layer, to.layer) {
        (Layer::Model, _) => Some("model depends on no sluice crate"),
        (Layer::Adapter, Layer::Model) => None,
        (Layer::Adapter, _) if from.name == "sluice-store" && to.name == "sluice-evidence" => None,
        (Layer::Adapter, _) => Some("adapters import only model (the store also evidence)"),
        (Layer::Service, Layer::Model | Layer::Adapter | Layer::Service) => None,
        (Layer::Service, _) => Some("services import adapters and services, never a surface"),
        (Layer::Surface, _) => None,
        (Layer::Tool, Layer::Model | Layer::Adapter | Layer::Service) => None,
        (Layer::Tool, _) => Some("tools build on services, not on surfaces"),
    }
}

#[test]
fn every_crate_depends_only_on_the_layers_below_it() {
    let crates = workspace_crates();
    assert!(
        crates.len() >= 10,
        "found only {} crates: is the workspace layout under crates/ unchanged?",
        crates.len()
    );
    let by_name: BTreeMap<&str, &Crate> = crates.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut broken = Vec::new();
    for from in &crates {
        for dep in &from.deps {
            let to = by_name.get(dep.as_str()).unwrap_or_else(|| {
                panic!("{}: unknown sluice crate {dep}", from.manifest.display())
            });
            if let Some(why) = forbidden(from, to) {
                broken.push(format!("{} -> {}: {why}", from.name, to.name));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rule_refuses_what_the_design_forbids() {
    let c = |name: &str, layer| Crate {
        name: name.into(),
        layer,
        manifest: PathBuf::new(),
        deps: Vec::new(),
    };
    let model = c("sluice-model", Layer::Model);
    let git = c("sluice-git", Layer::Adapter);
    let policy = c("sluice-policy", Layer::Adapter);
    let store = c("sluice-store", Layer::Adapter);
    let evidence = c("sluice-evidence", Layer::Adapter);
    let flow = c("sluice-flow", Layer::Service);
    let cli = c("sluice-cli", Layer::Surface);
    let testkit = c("sluice-testkit", Layer::Tool);
    assert!(forbidden(&policy, &git).is_some(), "adapter to adapter");
    assert!(
        forbidden(&git, &evidence).is_some(),
        "only the store may use evidence"
    );
    assert!(forbidden(&store, &evidence).is_none());
    assert!(forbidden(&model, &git).is_some());
    assert!(forbidden(&flow, &cli).is_some(), "service to surface");
    assert!(
        forbidden(&cli, &testkit).is_some(),
        "testkit in product code"
    );
    assert!(forbidden(&flow, &policy).is_none());
    assert!(forbidden(&cli, &flow).is_none());
}
