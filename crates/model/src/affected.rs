//! Affected-change detection: given the stacks (or apps) at the head revision, those at the
//! base revision and the files a change touched, decide which units must be planned and why.
//!
//! The decision is exact and explains itself: every affected unit carries the reasons that made
//! it so (a file under it, a module or include it uses, a configured watch pattern, or an
//! upstream stack that is itself affected).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::glob::{GlobError, GlobList};
use crate::graph::StackGraph;
use crate::path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
}

/// A file the change touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    pub status: FileStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// A changed file under the unit's own directory.
    File,
    /// A changed file in a local module or source the unit uses (transitively).
    Module,
    /// A changed file the unit includes or reads (include, read_terragrunt_config, var file,
    /// Kustomize resource outside the app folder).
    Include,
    /// A changed file matched by a watch glob configured for the unit.
    Pattern,
    /// An upstream stack the unit depends on is affected.
    Dependency,
}

/// Something outside a unit's own directory whose change affects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInput {
    pub kind: ReasonKind,
    pub path: String,
    pub is_dir: bool,
    /// The file that references it (for the explanation).
    pub via: String,
}

/// A stack or an app as affected detection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub id: String,
    pub path: String,
    pub env: Option<String>,
    pub inputs: Vec<UnitInput>,
    /// Extra globs from configuration.
    pub watch: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    Added,
    Modified,
    Deleted,
    Dependent,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedUnit {
    pub id: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub status: UnitStatus,
    pub reasons: Vec<Reason>,
}

/// The decision's inputs besides the units themselves.
pub struct Options<'a> {
    /// Dependency graph over the head units, indexed like `head`.
    pub graph: Option<&'a StackGraph>,
    /// Mark stacks that depend on an affected stack as affected (DESIGN: on by default).
    pub propagate_dependents: bool,
    /// Dependencies of head units on directories that are not head units, as (unit index,
    /// directory). When such a directory held a unit the change deleted, the dependent is
    /// affected: its plan reads outputs that will no longer exist.
    pub dangling: &'a [(usize, String)],
}

/// Decide which units are affected. Output is sorted by id; reasons are sorted and unique.
pub fn affected(
    head: &[Unit],
    base: &[Unit],
    changes: &[ChangedFile],
    opts: &Options<'_>,
) -> Result<Vec<AffectedUnit>, GlobError> {
    let index = InputIndex::build(head)?;
    let base_ids: HashSet<&str> = base.iter().map(|u| u.id.as_str()).collect();
    let mut reasons: BTreeMap<usize, Vec<Reason>> = BTreeMap::new();

    for change in changes {
        index.explain(&change.path, &mut |unit, reason| {
            reasons.entry(unit).or_default().push(reason);
        });
    }

    let head_ids: HashSet<&str> = head.iter().map(|u| u.id.as_str()).collect();
    let deleted: Vec<&Unit> = base
        .iter()
        .filter(|u| !head_ids.contains(u.id.as_str()))
        .collect();
    let direct: Vec<usize> = reasons.keys().copied().collect();

    // Every affected stack names each affected stack it reads from, so a dependent with two
    // affected upstreams shows both.
    let mut dependency_reasons: HashMap<usize, Vec<Reason>> = HashMap::new();
    if let (Some(graph), true) = (opts.graph, opts.propagate_dependents) {
        let deleted_at: HashMap<&str, &str> = deleted
            .iter()
            .map(|u| (u.path.as_str(), u.id.as_str()))
            .collect();
        let mut seeds = direct.clone();
        for (unit, dir) in opts.dangling {
            if let Some(id) = deleted_at.get(dir.as_str()) {
                dependency_reasons
                    .entry(*unit)
                    .or_default()
                    .push(dependency_reason(id));
                seeds.push(*unit);
            }
        }
        let mut affected_set: HashSet<usize> = seeds.iter().copied().collect();
        affected_set.extend(graph.dependents(&seeds).into_iter().map(|(unit, _)| unit));
        for &unit in &affected_set {
            for &up in graph.upstream_of(unit) {
                if affected_set.contains(&up) {
                    dependency_reasons
                        .entry(unit)
                        .or_default()
                        .push(dependency_reason(&head[up].id));
                }
            }
        }
    }

    let mut out: Vec<AffectedUnit> = Vec::new();
    for (i, unit) in head.iter().enumerate() {
        let mut rs = reasons.remove(&i).unwrap_or_default();
        let direct = !rs.is_empty();
        rs.extend(dependency_reasons.remove(&i).unwrap_or_default());
        if rs.is_empty() {
            continue;
        }
        let status = match (direct, base_ids.contains(unit.id.as_str())) {
            (true, false) => UnitStatus::Added,
            (true, true) => UnitStatus::Modified,
            (false, _) => UnitStatus::Dependent,
        };
        rs.sort();
        rs.dedup();
        out.push(AffectedUnit {
            id: unit.id.clone(),
            path: unit.path.clone(),
            env: unit.env.clone(),
            status,
            reasons: rs,
        });
    }

    for unit in deleted {
        let mut rs: Vec<Reason> = changes
            .iter()
            .filter(|c| path::is_under(&c.path, &unit.path))
            .map(|c| file_reason(&c.path))
            .collect();
        rs.sort();
        rs.dedup();
        out.push(AffectedUnit {
            id: unit.id.clone(),
            path: unit.path.clone(),
            env: unit.env.clone(),
            status: UnitStatus::Deleted,
            reasons: rs,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn dependency_reason(upstream: &str) -> Reason {
    Reason {
        kind: ReasonKind::Dependency,
        path: None,
        via: None,
        stack: Some(upstream.to_string()),
    }
}

fn file_reason(p: &str) -> Reason {
    Reason {
        kind: ReasonKind::File,
        path: Some(p.to_string()),
        via: None,
        stack: None,
    }
}

/// Lookup tables from a changed path to the units it affects, so a change of 50 files over
/// 10,000 stacks costs 50 walks up the directory tree rather than 500,000 comparisons.
struct InputIndex<'a> {
    by_dir: HashMap<&'a str, Vec<usize>>,
    inputs_by_dir: HashMap<&'a str, Vec<(usize, &'a UnitInput)>>,
    inputs_by_file: HashMap<&'a str, Vec<(usize, &'a UnitInput)>>,
    watch: GlobList,
    watch_owner: Vec<usize>,
}

impl<'a> InputIndex<'a> {
    fn build(units: &'a [Unit]) -> Result<Self, GlobError> {
        let mut by_dir: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut inputs_by_dir: HashMap<&str, Vec<(usize, &UnitInput)>> = HashMap::new();
        let mut inputs_by_file: HashMap<&str, Vec<(usize, &UnitInput)>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut watch_owner = Vec::new();
        for (i, unit) in units.iter().enumerate() {
            by_dir.entry(unit.path.as_str()).or_default().push(i);
            for input in &unit.inputs {
                let table = if input.is_dir {
                    &mut inputs_by_dir
                } else {
                    &mut inputs_by_file
                };
                table
                    .entry(input.path.as_str())
                    .or_default()
                    .push((i, input));
            }
            for w in &unit.watch {
                patterns.push(w.as_str());
                watch_owner.push(i);
            }
        }
        Ok(InputIndex {
            by_dir,
            inputs_by_dir,
            inputs_by_file,
            watch: GlobList::new(&patterns)?,
            watch_owner,
        })
    }

    fn explain(&self, changed: &str, emit: &mut impl FnMut(usize, Reason)) {
        if let Some(inputs) = self.inputs_by_file.get(changed) {
            for (unit, input) in inputs {
                emit(*unit, input_reason(changed, input));
            }
        }
        for dir in std::iter::once(changed).chain(path::ancestors(changed)) {
            if let Some(units) = self.by_dir.get(dir)
                && dir != changed
            {
                for unit in units {
                    emit(*unit, file_reason(changed));
                }
            }
            if let Some(inputs) = self.inputs_by_dir.get(dir) {
                for (unit, input) in inputs {
                    emit(*unit, input_reason(changed, input));
                }
            }
        }
        for m in self.watch.matches(changed) {
            emit(
                self.watch_owner[m],
                Reason {
                    kind: ReasonKind::Pattern,
                    path: Some(changed.to_string()),
                    via: Some(self.watch.pattern(m).to_string()),
                    stack: None,
                },
            );
        }
    }
}

fn input_reason(changed: &str, input: &UnitInput) -> Reason {
    Reason {
        kind: input.kind,
        path: Some(changed.to_string()),
        via: Some(if input.is_dir {
            input.path.clone()
        } else {
            input.via.clone()
        }),
        stack: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(id: &str, path: &str) -> Unit {
        Unit {
            id: id.into(),
            path: path.into(),
            env: id.split('/').next().map(str::to_string),
            inputs: Vec::new(),
            watch: Vec::new(),
        }
    }

    fn changed(p: &str) -> ChangedFile {
        ChangedFile {
            path: p.into(),
            status: FileStatus::Modified,
        }
    }

    fn run(
        head: &[Unit],
        base: &[Unit],
        changes: &[ChangedFile],
        graph: Option<&StackGraph>,
    ) -> Vec<AffectedUnit> {
        affected(
            head,
            base,
            changes,
            &Options {
                graph,
                propagate_dependents: true,
                dangling: &[],
            },
        )
        .unwrap()
    }

    #[test]
    fn file_module_include_pattern_and_dependency() {
        let mut net = unit("prod/net", "live/prod/net");
        net.inputs.push(UnitInput {
            kind: ReasonKind::Module,
            path: "modules/vpc".into(),
            is_dir: true,
            via: "live/prod/net/terragrunt.hcl".into(),
        });
        let mut db = unit("prod/db", "live/prod/db");
        db.inputs.push(UnitInput {
            kind: ReasonKind::Include,
            path: "live/root.hcl".into(),
            is_dir: false,
            via: "live/prod/db/terragrunt.hcl".into(),
        });
        let mut dns = unit("prod/dns", "live/prod/dns");
        dns.watch.push("shared/dns/**".into());
        let app = unit("prod/app", "live/prod/app");
        let head = vec![net, db, dns, app];
        let mut g = StackGraph::new(head.iter().map(|u| u.id.clone()));
        g.add_edge(3, 1); // app depends on db

        let all = head.clone();
        let r = run(&head, &all, &[changed("modules/vpc/main.tf")], Some(&g));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, "prod/net");
        assert_eq!(r[0].reasons[0].kind, ReasonKind::Module);
        assert_eq!(r[0].reasons[0].via.as_deref(), Some("modules/vpc"));

        let r = run(&head, &all, &[changed("live/root.hcl")], Some(&g));
        let ids: Vec<_> = r.iter().map(|u| (u.id.as_str(), u.status)).collect();
        assert_eq!(
            ids,
            vec![
                ("prod/app", UnitStatus::Dependent),
                ("prod/db", UnitStatus::Modified)
            ]
        );
        assert_eq!(r[0].reasons[0].stack.as_deref(), Some("prod/db"));

        let r = run(&head, &all, &[changed("shared/dns/zone.json")], Some(&g));
        assert_eq!(r[0].reasons[0].kind, ReasonKind::Pattern);
        assert_eq!(r[0].reasons[0].via.as_deref(), Some("shared/dns/**"));

        let r = affected(
            &head,
            &all,
            &[changed("live/root.hcl")],
            &Options {
                graph: Some(&g),
                propagate_dependents: false,
                dangling: &[],
            },
        )
        .unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn added_and_deleted_units() {
        let head = vec![unit("dev/a", "live/dev/a")];
        let base = vec![unit("dev/b", "live/dev/b")];
        let changes = vec![
            ChangedFile {
                path: "live/dev/a/main.tf".into(),
                status: FileStatus::Added,
            },
            ChangedFile {
                path: "live/dev/b/main.tf".into(),
                status: FileStatus::Deleted,
            },
        ];
        let r = run(&head, &base, &changes, None);
        assert_eq!(r[0].status, UnitStatus::Added);
        assert_eq!(r[1].status, UnitStatus::Deleted);
        assert_eq!(r[1].reasons[0].path.as_deref(), Some("live/dev/b/main.tf"));
    }

    #[test]
    fn dependents_of_a_deleted_stack_are_affected() {
        // b depended on a (now deleted); c depends on b.
        let head = vec![unit("dev/b", "live/dev/b"), unit("dev/c", "live/dev/c")];
        let base = vec![
            unit("dev/a", "live/dev/a"),
            head[0].clone(),
            head[1].clone(),
        ];
        let mut g = StackGraph::new(head.iter().map(|u| u.id.clone()));
        g.add_edge(1, 0);
        let changes = vec![ChangedFile {
            path: "live/dev/a/main.tf".into(),
            status: FileStatus::Deleted,
        }];
        let dangling = vec![(0, "live/dev/a".to_string())];
        let r = affected(
            &head,
            &base,
            &changes,
            &Options {
                graph: Some(&g),
                propagate_dependents: true,
                dangling: &dangling,
            },
        )
        .unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|u| (u.id.as_str(), u.status, u.reasons[0].stack.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dev/a", UnitStatus::Deleted, None),
                ("dev/b", UnitStatus::Dependent, Some("dev/a")),
                ("dev/c", UnitStatus::Dependent, Some("dev/b")),
            ]
        );
    }

    #[test]
    fn sibling_prefix_is_not_under() {
        let head = vec![unit("dev/a", "live/dev/a")];
        assert!(run(&head, &head, &[changed("live/dev/ab/main.tf")], None).is_empty());
    }

    proptest! {
        /// The indexed decision agrees with a naive scan for the "file under the directory" rule.
        #[test]
        fn index_matches_naive_scan(
            dirs in proptest::collection::btree_set(proptest::collection::vec("[ab]{1,2}", 1..4), 1..8),
            files in proptest::collection::vec(proptest::collection::vec("[ab]{1,2}", 1..5), 0..10),
        ) {
            let units: Vec<Unit> = dirs.iter().map(|d| unit(&d.join("/"), &d.join("/"))).collect();
            let changes: Vec<ChangedFile> = files.iter().map(|f| changed(&f.join("/"))).collect();
            let got: Vec<String> = run(&units, &units, &changes, None).into_iter().map(|u| u.id).collect();
            let mut want: Vec<String> = units.iter()
                .filter(|u| changes.iter().any(|c| c.path != u.path && path::is_under(&c.path, &u.path)))
                .map(|u| u.id.clone()).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
