//! The Terragrunt evaluator over real configurations: gruntwork-io/terragrunt's own test fixtures
//! and the terragrunt-infrastructure-catalog-example, read in place from `../shared/corpus`.
//!
//! Every `.hcl` file must parse or fail cleanly, every stack must evaluate without panicking, and
//! for a set of fixtures the dependency edges and inputs were read off the files by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_model::tree::Tree;
use sluice_org::terragrunt::{InputKind, ModuleCache, StackRefs, check_syntax, evaluate_stack};

/// The corpus tree on disk as a [`Tree`], rooted at `corpus/terragrunt`.
struct DiskFiles {
    root: PathBuf,
    /// Every file, walked once, for `files_under`.
    files: Vec<String>,
}

impl DiskFiles {
    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

impl Tree for DiskFiles {
    fn revision(&self) -> String {
        "corpus".to_string()
    }

    fn files_under<'a>(&'a self, dir: &'a str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        Box::new(
            self.files
                .iter()
                .filter(move |p| sluice_model::path::is_under(p, dir))
                .map(String::as_str),
        )
    }

    fn read(&self, path: &str) -> Option<Arc<[u8]>> {
        let path = self.path(path);
        path.is_file()
            .then(|| std::fs::read(path).ok())
            .flatten()
            .map(Arc::from)
    }

    fn is_file(&self, path: &str) -> bool {
        self.path(path).is_file()
    }

    fn is_dir(&self, path: &str) -> bool {
        self.path(path).is_dir()
    }

    fn list_dir(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

fn corpus() -> Option<DiskFiles> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/corpus/terragrunt");
    if root.is_dir() {
        let mut files = DiskFiles {
            root,
            files: Vec::new(),
        };
        let mut all = Vec::new();
        walk(&files, "", &mut all);
        all.sort();
        files.files = all;
        return Some(files);
    }
    assert!(
        std::env::var("SLUICE_REQUIRE_CORPUS").as_deref() != Ok("1"),
        "corpus not found at {} and SLUICE_REQUIRE_CORPUS=1",
        root.display()
    );
    println!("corpus not found at {}, skipping", root.display());
    None
}

/// Repo-relative paths of every file under `dir`, sorted.
fn walk(files: &DiskFiles, dir: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(files.path(dir)) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(files, &path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

#[test]
fn every_hcl_file_parses_or_fails_cleanly_and_every_stack_evaluates() {
    let Some(files) = corpus() else { return };
    let mut all = Vec::new();
    walk(&files, "", &mut all);
    all.sort();

    let (mut parsed, mut broken) = (0, 0);
    for path in all.iter().filter(|p| p.ends_with(".hcl")) {
        let bytes = std::fs::read(files.path(path)).unwrap();
        let src = String::from_utf8_lossy(&bytes);
        match check_syntax(path, &src) {
            Ok(()) => parsed += 1,
            Err(err) => {
                assert_eq!(err.file, *path);
                assert!(err.line >= 1 && err.col >= 1, "{err}");
                broken += 1;
            }
        }
    }
    println!("{parsed} .hcl files parse, {broken} do not");
    assert!(parsed > 1000, "only {parsed} .hcl files parsed");
    // Deliberately broken fixtures exist (hclfmt-errors, ...), but they are the exception.
    assert!(
        broken < parsed / 10,
        "{broken} of {} .hcl files fail",
        parsed + broken
    );

    // SLUICE_CORPUS_VERBOSE=1 prints every warning, to review what the evaluator cannot decide.
    let verbose = std::env::var("SLUICE_CORPUS_VERBOSE").as_deref() == Ok("1");
    let cache = ModuleCache::new();
    let (mut stacks, mut failed, mut warnings) = (0, 0, 0);
    for config in all.iter().filter(|p| p.ends_with("/terragrunt.hcl")) {
        let dir = config.trim_end_matches("/terragrunt.hcl");
        stacks += 1;
        match evaluate_stack(dir, &files, &cache) {
            Ok(refs) => {
                warnings += refs.warnings.len();
                if verbose {
                    for w in &refs.warnings {
                        println!("{dir}: {}:{}:{}: {}", w.file, w.line, w.col, w.message);
                    }
                }
            }
            Err(err) => {
                failed += 1;
                if verbose {
                    println!("{dir}: error: {err}");
                }
            }
        }
    }
    println!("{stacks} stacks: {failed} with a syntax error, {warnings} warnings in total");
    assert!(stacks > 500, "only {stacks} stacks");
}

fn fixture(files: &DiskFiles, dir: &str) -> StackRefs {
    let dir = format!("terragrunt-fixtures/test/fixtures/{dir}");
    evaluate_stack(&dir, files, &ModuleCache::new()).unwrap_or_else(|err| panic!("{dir}: {err}"))
}

/// Dependency directories with the fixture prefix stripped.
fn deps(refs: &StackRefs) -> Vec<&str> {
    refs.dependencies.iter().map(|d| strip(&d.dir)).collect()
}

fn inputs(refs: &StackRefs) -> Vec<(InputKind, &str)> {
    refs.inputs
        .iter()
        .map(|i| (i.kind, strip(&i.path)))
        .collect()
}

fn strip(path: &str) -> &str {
    path.strip_prefix("terragrunt-fixtures/test/fixtures/")
        .unwrap_or(path)
}

#[test]
fn hand_checked_dependency_fixtures() {
    let Some(files) = corpus() else { return };

    // dependency "dependency" { config_path = "../dependency" }
    let refs = fixture(&files, "dependency-output/app");
    assert_eq!(deps(&refs), ["dependency-output/dependency"]);
    assert_eq!(refs.dependencies[0].name.as_deref(), Some("dependency"));
    assert_eq!(refs.dependencies[0].line, 3);
    assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);

    // A trailing slash, and a bare include found by find_in_parent_folders() two levels up
    // (fixtures/terragrunt.hcl, whose source is a tfr:// registry module, not an input).
    let refs = fixture(&files, "dag-graph/region-1/unit-a");
    assert_eq!(deps(&refs), ["dag-graph/region-2/unit-b"]);
    assert_eq!(inputs(&refs), [(InputKind::Include, "terragrunt.hcl")]);
    assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);

    // dependencies { paths = ["../module-a"] } next to a local source whose main.tf uses a
    // nested local module.
    let refs = fixture(&files, "destroy-order/app/module-b");
    assert_eq!(deps(&refs), ["destroy-order/app/module-a"]);
    assert_eq!(refs.dependencies[0].name, None);
    assert_eq!(
        inputs(&refs),
        [
            (InputKind::Source, "destroy-order/hello"),
            (InputKind::Module, "destroy-order/hello/hello"),
        ]
    );
    let refs = fixture(&files, "destroy-order/app/module-d");
    assert_eq!(deps(&refs), ["destroy-order/app/module-c"]);
    assert!(
        fixture(&files, "destroy-order/app/module-e")
            .dependencies
            .is_empty()
    );

    // `source = ".//"` is the stack itself; root.hcl comes from find_in_parent_folders.
    let refs = fixture(&files, "dependency-optimisation/module-c");
    assert_eq!(deps(&refs), ["dependency-optimisation/module-b"]);
    assert_eq!(
        inputs(&refs),
        [
            (InputKind::Source, "dependency-optimisation/module-c"),
            (InputKind::Include, "dependency-optimisation/root.hcl"),
        ]
    );

    // Three named includes, each contributing one dependency written with
    // get_parent_terragrunt_dir(), which answers for the included file.
    let refs = fixture(&files, "multiinclude-dependency/main");
    assert_eq!(
        deps(&refs),
        [
            "multiinclude-dependency/depa",
            "multiinclude-dependency/depb",
            "multiinclude-dependency/depc",
        ]
    );
    assert_eq!(
        refs.dependencies[0].file,
        "terragrunt-fixtures/test/fixtures/multiinclude-dependency/depa.hcl"
    );

    // get_parent_terragrunt_dir() without any include is the stack's own directory.
    let refs = fixture(&files, "read-config/iam_roles_multiple_modules");
    assert_eq!(
        deps(&refs),
        [
            "read-config/iam_roles_multiple_modules/component1",
            "read-config/iam_roles_multiple_modules/component2",
        ]
    );

    // root.hcl declares dependency "vpc" with config_path = ""; the child's block overrides it.
    let refs = fixture(&files, "include-deep/child");
    assert_eq!(deps(&refs), ["include-deep/vpc"]);
    assert!(refs.warnings.is_empty(), "{:#?}", refs.warnings);
    let refs = fixture(&files, "include-multiple/shallow-merge/child");
    assert_eq!(deps(&refs), ["include-multiple/shallow-merge/vpc"]);
    assert!(inputs(&refs).contains(&(InputKind::Source, "include-multiple/modules/reflect")));

    // no_merge includes: the dependency comes through `include.vpc_dep...`, which is only known
    // once Terragrunt has parsed the include, so it is reported rather than guessed.
    let refs = fixture(&files, "include-multiple/expose/child");
    assert!(refs.dependencies.is_empty());
    assert!(
        refs.warnings.iter().any(|w| w
            .message
            .contains("include.vpc_dep.dependency.vpc.config_path")
            && w.line == 18),
        "{:#?}",
        refs.warnings
    );

    // Expanded dependency blocks with literal for_each and count.
    let refs = fixture(&files, "dependency-expansion/keyed/app");
    assert_eq!(
        deps(&refs),
        [
            "dependency-expansion/keyed/aurora-api",
            "dependency-expansion/keyed/aurora-web",
            "dependency-expansion/keyed/shard-0",
            "dependency-expansion/keyed/shard-1",
            "dependency-expansion/keyed/vpc",
        ]
    );

    // config_path = "../" and a nested stack; the shared include is found by a path with a
    // directory in it.
    let refs = fixture(&files, "dependency-include-remote-state/parent/child");
    assert_eq!(
        deps(&refs),
        [
            "dependency-include-remote-state/parent",
            "dependency-include-remote-state/rgs",
            "dependency-include-remote-state/sub",
        ]
    );
    assert!(inputs(&refs).contains(&(
        InputKind::Include,
        "dependency-include-remote-state/_shared/remote_state.hcl"
    )));
}

#[test]
fn hand_checked_catalog_example() {
    let Some(files) = corpus() else { return };
    let cache = ModuleCache::new();

    // `source = "../../../.././/modules/ec2-asg-service"`: four levels up to the catalog root,
    // then the module below `//`.
    let refs = evaluate_stack(
        "catalog-example/examples/terragrunt/units/ec2-asg-service",
        &files,
        &cache,
    )
    .unwrap();
    assert!(refs.dependencies.is_empty());
    assert_eq!(
        inputs(&refs),
        [
            (
                InputKind::Include,
                "catalog-example/examples/terragrunt/root.hcl"
            ),
            (
                InputKind::Read,
                "catalog-example/examples/terragrunt/units/ec2-asg-service/scripts/user-data.sh"
            ),
            (InputKind::Source, "catalog-example/modules/ec2-asg-service"),
            // Why the source uses `//`: the module reaches its siblings.
            (InputKind::Module, "catalog-example/modules/sg"),
            (InputKind::Module, "catalog-example/modules/sg-rule"),
        ]
    );
    let sg = refs
        .inputs
        .iter()
        .find(|i| i.path == "catalog-example/modules/sg")
        .unwrap();
    assert_eq!(
        (sg.via.as_str(), sg.line),
        ("catalog-example/modules/ec2-asg-service/main.tf", 53)
    );
    // The corpus keeps only .hcl and .tf files, so the script read by templatefile() is absent.
    assert_eq!(refs.warnings.len(), 1, "{:#?}", refs.warnings);
    assert!(refs.warnings[0].message.starts_with("file not found: "));

    // Units written for `terragrunt stack`: config_path comes from `values`, which only exist
    // once a stack file instantiates the unit. Reported, never guessed; the git source is
    // remote and not an input.
    let refs = evaluate_stack("catalog-example/units/sg-to-db-sg-rule", &files, &cache).unwrap();
    assert!(refs.dependencies.is_empty());
    let unresolved: Vec<(&str, u32)> = refs
        .warnings
        .iter()
        .filter(|w| w.message.starts_with("cannot resolve path statically"))
        .map(|w| (w.message.rsplit(": ").next().unwrap(), w.line))
        .collect();
    assert_eq!(unresolved, [("values.sg_path", 21), ("values.db_path", 29)]);
    // The unit expects to be generated below a root.hcl; in the catalog itself there is none.
    assert!(refs.inputs.is_empty(), "{:#?}", refs.inputs);
    assert!(refs.warnings.iter().any(|w| {
        w.message
            .starts_with("find_in_parent_folders: no `root.hcl`")
            && w.line == 2
    }));
}
