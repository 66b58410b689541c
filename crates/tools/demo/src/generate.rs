//! A deterministic generator of large orgs for benchmarks and scale tests: N stacks across
//! environments and regions, layered Terragrunt dependencies, shared local modules that use
//! each other, and a PR branch touching a fixed number of files. The same seed always yields
//! the same repository, byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_git::git_write::{Author, Writer};

use sluice_flow::error::PipelineError;
use sluice_model::splitmix::SplitMix64;

pub type Files = BTreeMap<String, Vec<u8>>;

pub const BASE_BRANCH: &str = "main";
pub const PR_BRANCH: &str = "pr/bench";

#[derive(Debug, Clone)]
pub struct Spec {
    pub stacks: usize,
    pub seed: u64,
    /// Files the PR branch touches.
    pub pr_files: usize,
    pub modules: usize,
}

impl Spec {
    pub fn new(stacks: usize, seed: u64) -> Self {
        Spec {
            stacks,
            seed,
            pr_files: 50,
            modules: (stacks / 200).clamp(5, 60),
        }
    }
}

const ENVS: &[&str] = &["dev", "stage", "prod"];
const REGIONS: &[&str] = &[
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "sa-east-1",
    "ca-central-1",
];

/// One generated stack.
#[derive(Debug, Clone)]
pub struct GenStack {
    pub id: String,
    pub path: String,
    pub deps: Vec<String>,
    pub module: usize,
}

pub struct Generated {
    pub main: Files,
    pub pr: Files,
    pub stacks: Vec<GenStack>,
}

const SLUICE_YAML: &str = "version: 1\norg: bench\nenvironments:\n  dev: { order: 1 }\n  stage: { order: 2 }\n  prod: { order: 3, protected: true }\nstacks:\n  root: live\n  layout: \"{env}/{region}/{stack}\"\n  layers:\n    - network\n    - identity\n    - { name: cluster, stacks: [\"cluster-*\"] }\n    - { name: data, stacks: [\"data-*\"] }\n    - { name: app, stacks: [\"app-*\"] }\napps:\n  root: gitops/clusters\n  layout: \"{cluster}/apps/{app}\"\n";

pub fn generate(spec: &Spec) -> Generated {
    let mut rng = SplitMix64::new(spec.seed);
    let mut main = Files::new();
    main.insert("sluice.yaml".into(), SLUICE_YAML.as_bytes().to_vec());
    main.insert("live/root.hcl".into(), b"remote_state {\n  backend = \"s3\"\n  config = { key = \"${path_relative_to_include()}/tf.tfstate\" }\n}\n".to_vec());

    // Shared modules: each may use a "common" module, so module changes propagate transitively.
    for m in 0..spec.modules {
        let mut tf = format!("resource \"null_resource\" \"m{m}\" {{}}\n");
        if m % 3 == 1 {
            tf.push_str(&format!(
                "module \"common\" {{\n  source = \"../common-{}\"\n}}\n",
                m % 5
            ));
        }
        main.insert(format!("modules/mod-{m:03}/main.tf"), tf.into_bytes());
        main.insert(
            format!("modules/mod-{m:03}/variables.tf"),
            format!("variable \"name\" {{ default = \"m{m}\" }}\n").into_bytes(),
        );
    }
    for c in 0..5 {
        main.insert(
            format!("modules/common-{c}/main.tf"),
            format!("locals {{ common = {c} }}\n").into_bytes(),
        );
    }

    let cells: Vec<(&str, &str)> = ENVS
        .iter()
        .flat_map(|e| REGIONS.iter().map(move |r| (*e, *r)))
        .collect();
    let per_cell = spec.stacks.div_ceil(cells.len()).max(3);
    let mut stacks: Vec<GenStack> = Vec::with_capacity(spec.stacks);
    'cells: for (env, region) in &cells {
        let base = format!("live/{env}/{region}");
        main.insert(
            format!("live/{env}/env.hcl"),
            format!("locals {{ env = \"{env}\" }}\n").into_bytes(),
        );
        let mut cell: Vec<String> = Vec::new();
        for i in 0..per_cell {
            if stacks.len() == spec.stacks {
                break 'cells;
            }
            let name = match i {
                0 => "network".to_string(),
                1 => "identity".to_string(),
                _ => match i % 4 {
                    0 => format!("cluster-{i:04}"),
                    1 => format!("data-{i:04}"),
                    _ => format!("app-{i:04}"),
                },
            };
            // Depend only on earlier stacks of earlier or equal layers, as the layer rule asks.
            let layer = |n: &str| {
                ["network", "identity", "cluster", "data", "app"]
                    .iter()
                    .position(|l| n.starts_with(l))
                    .unwrap_or(4)
            };
            let mine = layer(&name);
            let candidates: Vec<&String> = cell
                .iter()
                .filter(|c| layer(c) <= mine && layer(c) < 4)
                .collect();
            let mut deps: Vec<String> = Vec::new();
            if !candidates.is_empty() {
                for _ in 0..1 + rng.below(3) {
                    let d = candidates[rng.below(candidates.len())].clone();
                    if !deps.contains(&d) {
                        deps.push(d);
                    }
                }
            }
            deps.sort();
            let module = rng.below(spec.modules);
            let mut hcl = String::from(
                "include \"root\" {\n  path = find_in_parent_folders(\"root.hcl\")\n}\n\nlocals {\n  env = read_terragrunt_config(find_in_parent_folders(\"env.hcl\"))\n}\n\n",
            );
            hcl.push_str(&format!(
                "terraform {{\n  source = \"../../../../modules//mod-{module:03}\"\n}}\n\n"
            ));
            for d in &deps {
                hcl.push_str(&format!(
                    "dependency \"{d}\" {{\n  config_path = \"../{d}\"\n}}\n\n"
                ));
            }
            hcl.push_str(&format!(
                "inputs = {{\n  name  = \"{name}\"\n  size  = {}\n}}\n",
                rng.below(16) + 1
            ));
            main.insert(format!("{base}/{name}/terragrunt.hcl"), hcl.into_bytes());
            stacks.push(GenStack {
                id: format!("{env}/{region}/{name}"),
                path: format!("{base}/{name}"),
                deps: deps.iter().map(|d| format!("{env}/{region}/{d}")).collect(),
                module,
            });
            cell.push(name);
        }
    }

    let pr = pr_change(&main, &stacks, spec, &mut rng);
    Generated { main, pr, stacks }
}

/// The PR: edits to stack configs, a few module files and one new stack, `pr_files` in all.
fn pr_change(main: &Files, stacks: &[GenStack], spec: &Spec, rng: &mut SplitMix64) -> Files {
    let mut pr = main.clone();
    let module_edits = (spec.pr_files / 12).max(1);
    let mut touched = 0;
    for k in 0..module_edits.min(spec.modules) {
        let path = format!(
            "modules/mod-{:03}/main.tf",
            (k * 7 + rng.below(3)) % spec.modules
        );
        if let Some(content) = pr.get_mut(&path)
            && !content.ends_with(b"# tuned by the PR\n")
        {
            content.extend_from_slice(b"# tuned by the PR\n");
            touched += 1;
        }
    }
    let new_stack = stacks.first().map(|s| {
        format!(
            "{}/app-new/terragrunt.hcl",
            sluice_model::path::parent(&s.path)
        )
    });
    if let Some(path) = &new_stack {
        pr.insert(
            path.clone(),
            b"terraform {\n  source = \"../../../../modules//mod-000\"\n}\n".to_vec(),
        );
        touched += 1;
    }
    let mut guard = 0;
    while touched < spec.pr_files && guard < spec.pr_files * 20 {
        guard += 1;
        let s = &stacks[rng.below(stacks.len())];
        let path = format!("{}/terragrunt.hcl", s.path);
        let content = pr.get_mut(&path).expect("generated stack");
        if content.ends_with(b"# changed\n") {
            continue;
        }
        content.extend_from_slice(b"# changed\n");
        touched += 1;
    }
    pr
}

/// Generate the org and write it as a bare-bones git repository at `dir` (branches `main`
/// and `pr/bench`).
pub fn write_repo(spec: &Spec, dir: &Path) -> Result<Generated, PipelineError> {
    let io = |e: sluice_git::git::GitError| {
        PipelineError::failed(format!("writing {}", dir.display()), e)
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| PipelineError::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(PipelineError::Internal(format!(
            "{}: directory is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    let generated = generate(spec);
    let writer = Writer::init(dir).map_err(io)?;
    let author = Author {
        name: "Bench Generator",
        email: "bench@sluice.invalid",
        time: 1_790_000_000,
    };
    let base = writer
        .commit(
            BASE_BRANCH,
            &generated.main,
            None,
            "Generated org\n",
            &author,
        )
        .map_err(io)?;
    writer
        .commit(
            PR_BRANCH,
            &generated.pr,
            Some(base),
            "Generated PR\n",
            &author,
        )
        .map_err(io)?;
    writer
        .checkout(BASE_BRANCH, base, &generated.main)
        .map_err(io)?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_org() {
        let a = generate(&Spec::new(300, 7));
        let b = generate(&Spec::new(300, 7));
        assert_eq!(a.main, b.main);
        assert_eq!(a.pr, b.pr);
        assert_ne!(generate(&Spec::new(300, 8)).pr, a.pr);
        assert_eq!(a.stacks.len(), 300);
    }

    #[test]
    fn pr_touches_the_requested_number_of_files() {
        let g = generate(&Spec::new(1000, 1));
        let changed =
            g.pr.iter()
                .filter(|(p, c)| g.main.get(*p) != Some(*c))
                .count();
        assert_eq!(changed, 50);
    }
}
