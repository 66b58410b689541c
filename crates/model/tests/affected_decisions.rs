//! The affected decision as a pure function: units, a dependency graph and the changed files
//! in, affected units with their status and reasons out. These cases were end-to-end tests of
//! `sluice affected` (crates/surfaces/cli/tests/affected_e2e.rs); what they check is the
//! decision, not git or parsing, so they run here without a repository.

use sluice_model::affected::{
    AffectedUnit, ChangedFile, FileStatus, Options, ReasonKind, Unit, affected,
};
use sluice_model::graph::StackGraph;

const R: &str = "live/dev/eu-west-1";

/// A unit `id` at `live/{id}`, in the environment its id starts with, with no inputs.
fn unit(id: &str) -> Unit {
    Unit {
        id: id.to_string(),
        path: format!("live/{id}"),
        env: id.split('/').next().map(str::to_string),
        inputs: Vec::new(),
        watch: Vec::new(),
    }
}

/// A stack `dev/eu-west-1/{name}` at `live/dev/eu-west-1/{name}`.
fn stack(name: &str) -> Unit {
    unit(&format!("dev/eu-west-1/{name}"))
}

fn stacks(names: &[&str]) -> Vec<Unit> {
    names.iter().map(|n| stack(n)).collect()
}

/// The graph over `units` with `(stack, upstream)` edges given by stack name.
fn graph(units: &[Unit], edges: &[(&str, &str)]) -> StackGraph {
    let mut g = StackGraph::new(units.iter().map(|u| u.id.clone()));
    let at = |name: &str| {
        g.index_of(&format!("dev/eu-west-1/{name}"))
            .unwrap_or_else(|| panic!("{name} is a unit"))
    };
    let edges: Vec<(usize, usize)> = edges.iter().map(|(s, u)| (at(s), at(u))).collect();
    for (s, u) in edges {
        g.add_edge(s, u);
    }
    g
}

/// The decision for a change of the `changed` files over `units` (the same at base and head).
fn decide(
    units: &[Unit],
    graph: Option<&StackGraph>,
    propagate_dependents: bool,
    changed: &[String],
) -> Vec<AffectedUnit> {
    let changes: Vec<ChangedFile> = changed
        .iter()
        .map(|p| ChangedFile {
            path: p.clone(),
            status: FileStatus::Modified,
        })
        .collect();
    let opts = Options {
        graph,
        propagate_dependents,
        dangling: &[],
    };
    affected(units, units, &changes, &opts).expect("valid globs")
}

/// The Terragrunt file of stack `name`.
fn tg(name: &str) -> String {
    format!("{R}/{name}/terragrunt.hcl")
}

/// `"{name} {status:?}"` of each affected unit in output order, the name being the id without
/// the `dev/eu-west-1/` every stack here shares.
fn statuses(out: &[AffectedUnit]) -> Vec<String> {
    out.iter()
        .map(|u| {
            let name = u.id.strip_prefix("dev/eu-west-1/").unwrap_or(&u.id);
            format!("{name} {:?}", u.status)
        })
        .collect()
}

/// The upstream stacks named by a unit's dependency reasons.
fn upstreams<'a>(out: &'a [AffectedUnit], id: &str) -> Vec<&'a str> {
    let unit = out.iter().find(|u| u.id == id).expect("unit affected");
    unit.reasons
        .iter()
        .filter(|r| r.kind == ReasonKind::Dependency)
        .map(|r| r.stack.as_deref().expect("dependency names its stack"))
        .collect()
}

/// a <- b <- c (b reads a, c reads b) and an unrelated z.
fn chain() -> (Vec<Unit>, StackGraph) {
    let units = stacks(&["a", "b", "c", "z"]);
    let g = graph(&units, &[("b", "a"), ("c", "b")]);
    (units, g)
}

#[test]
fn dependents_of_a_changed_stack_follow_the_chain_and_name_their_upstream() {
    let (units, g) = chain();
    let out = decide(&units, Some(&g), true, &[tg("a")]);
    assert_eq!(statuses(&out), ["a Modified", "b Dependent", "c Dependent"]);
    assert_eq!(upstreams(&out, "dev/eu-west-1/b"), ["dev/eu-west-1/a"]);
    assert_eq!(upstreams(&out, "dev/eu-west-1/c"), ["dev/eu-west-1/b"]);
}

#[test]
fn change_in_the_middle_propagates_downstream_only() {
    let (units, g) = chain();
    let out = decide(&units, Some(&g), true, &[tg("b")]);
    assert_eq!(statuses(&out), ["b Modified", "c Dependent"]);
}

#[test]
fn without_propagation_only_the_changed_stack_is_affected() {
    let (units, g) = chain();
    let out = decide(&units, Some(&g), false, &[tg("a")]);
    assert_eq!(statuses(&out), ["a Modified"]);
    assert!(out[0].reasons.iter().all(|r| r.kind == ReasonKind::File));
}

#[test]
fn a_dependent_names_every_affected_upstream() {
    let units = stacks(&["b", "c", "d"]);
    let g = graph(&units, &[("d", "b"), ("d", "c")]);
    let out = decide(&units, Some(&g), true, &[tg("b"), tg("c")]);
    assert_eq!(statuses(&out), ["b Modified", "c Modified", "d Dependent"]);
    assert_eq!(
        upstreams(&out, "dev/eu-west-1/d"),
        ["dev/eu-west-1/b", "dev/eu-west-1/c"]
    );
}

#[test]
fn units_and_their_reasons_come_out_sorted_and_unique() {
    let ids = [
        "prod/eu-west-1/zeta",
        "dev/us-east-1/alpha",
        "dev/eu-west-1/mid",
        "prod/ap-south-1/beta",
    ];
    let units: Vec<Unit> = ids.iter().map(|id| unit(id)).collect();
    let mut changes = Vec::new();
    for id in ids {
        for file in ["terragrunt.hcl", "b.tf", "a.tf", "b.tf"] {
            changes.push(format!("live/{id}/{file}"));
        }
    }
    let out = decide(&units, None, true, &changes);
    let got: Vec<&str> = out.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        got,
        [
            "dev/eu-west-1/mid",
            "dev/us-east-1/alpha",
            "prod/ap-south-1/beta",
            "prod/eu-west-1/zeta",
        ]
    );
    let paths: Vec<&str> = out[1]
        .reasons
        .iter()
        .map(|r| r.path.as_deref().expect("file reason has a path"))
        .collect();
    assert_eq!(
        paths,
        [
            "live/dev/us-east-1/alpha/a.tf",
            "live/dev/us-east-1/alpha/b.tf",
            "live/dev/us-east-1/alpha/terragrunt.hcl",
        ]
    );
}

#[test]
fn no_changed_files_affect_nothing() {
    let (units, g) = chain();
    assert!(decide(&units, Some(&g), true, &[]).is_empty());
}
