//! The stack dependency graph: edges point from a downstream stack to the upstream stacks whose
//! outputs it reads. Cycles and layer inversions are errors that name the stacks involved.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Default)]
pub struct StackGraph {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    upstream: Vec<Vec<usize>>,
    downstream: Vec<Vec<usize>>,
}

/// An edge from the layer rule's point of view: `stack` (layer `stack_layer`) depends on
/// `upstream` in a layer that comes later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerViolation {
    pub stack: String,
    pub stack_layer: String,
    pub upstream: String,
    pub upstream_layer: String,
}

impl std::fmt::Display for LayerViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "layer rule: {} (layer {}) depends on {} (layer {}); a layer may only depend on layers before it",
            self.stack, self.stack_layer, self.upstream, self.upstream_layer
        )
    }
}

impl StackGraph {
    pub fn new<I: IntoIterator<Item = String>>(ids: I) -> Self {
        let ids: Vec<String> = ids.into_iter().collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let n = ids.len();
        StackGraph {
            ids,
            index,
            upstream: vec![Vec::new(); n],
            downstream: vec![Vec::new(); n],
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn id(&self, index: usize) -> &str {
        &self.ids[index]
    }

    /// Record that `stack` depends on `upstream`. Duplicate edges are ignored.
    pub fn add_edge(&mut self, stack: usize, upstream: usize) {
        if !self.upstream[stack].contains(&upstream) {
            self.upstream[stack].push(upstream);
            self.downstream[upstream].push(stack);
        }
    }

    pub fn upstream_of(&self, stack: usize) -> &[usize] {
        &self.upstream[stack]
    }

    pub fn downstream_of(&self, stack: usize) -> &[usize] {
        &self.downstream[stack]
    }

    /// Every edge as (stack, upstream) ids, sorted.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut e: Vec<(&str, &str)> = self
            .upstream
            .iter()
            .enumerate()
            .flat_map(|(s, ups)| ups.iter().map(move |u| (s, *u)))
            .map(|(s, u)| (self.ids[s].as_str(), self.ids[u].as_str()))
            .collect();
        e.sort_unstable();
        e
    }

    /// One cycle per strongly connected component that has one, each as the list of ids
    /// `a → b → … → a` (first id repeated at the end), smallest id first. Iterative, so deep
    /// chains of thousands of stacks cannot overflow the stack.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut cycles = Vec::new();
        for component in self.strongly_connected() {
            let self_loop =
                component.len() == 1 && self.upstream[component[0]].contains(&component[0]);
            if component.len() > 1 || self_loop {
                cycles.push(self.cycle_within(&component));
            }
        }
        cycles.sort();
        cycles
    }

    /// Tarjan's algorithm without recursion.
    fn strongly_connected(&self) -> Vec<Vec<usize>> {
        let n = self.ids.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0;
        let mut out = Vec::new();
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            let mut work: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (v, ref mut child)) = work.last_mut() {
                if *child == 0 && index[v] == usize::MAX {
                    index[v] = next;
                    low[v] = next;
                    next += 1;
                    stack.push(v);
                    on_stack[v] = true;
                }
                if let Some(&w) = self.upstream[v].get(*child) {
                    *child += 1;
                    if index[w] == usize::MAX {
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
        out
    }

    /// A concrete cycle inside one strongly connected component, by BFS back to the start.
    fn cycle_within(&self, component: &[usize]) -> Vec<String> {
        let start = *component
            .iter()
            .min_by_key(|i| &self.ids[**i])
            .expect("non-empty");
        let inside: std::collections::HashSet<usize> = component.iter().copied().collect();
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(v) = queue.pop_front() {
            let mut ups = self.upstream[v].clone();
            ups.sort_by_key(|u| &self.ids[*u]);
            for u in ups {
                if u == start {
                    closing = Some(v);
                    break 'search;
                }
                if inside.contains(&u) && !prev.contains_key(&u) {
                    prev.insert(u, v);
                    queue.push_back(u);
                }
            }
        }
        let mut path = vec![start];
        let mut v = closing.unwrap_or(start);
        let mut back = Vec::new();
        while v != start {
            back.push(v);
            v = prev[&v];
        }
        path.extend(back.into_iter().rev());
        path.push(start);
        path.into_iter().map(|i| self.ids[i].clone()).collect()
    }

    /// Stacks that transitively depend on any of `seeds`, each with the upstream stack through
    /// which it was reached (breadth first, so the shortest explanation wins).
    pub fn dependents(&self, seeds: &[usize]) -> Vec<(usize, usize)> {
        let mut seen = vec![false; self.ids.len()];
        for s in seeds {
            seen[*s] = true;
        }
        let mut queue: VecDeque<usize> = seeds.iter().copied().collect();
        let mut out = Vec::new();
        while let Some(v) = queue.pop_front() {
            for &d in &self.downstream[v] {
                if !seen[d] {
                    seen[d] = true;
                    out.push((d, v));
                    queue.push_back(d);
                }
            }
        }
        out
    }

    /// Edges where a stack depends on a stack of a later layer. `layer_of[i]` is the position
    /// of stack i's layer in the configured order, with its name.
    pub fn layer_violations(&self, layer_of: &[Option<(usize, &str)>]) -> Vec<LayerViolation> {
        let mut out = Vec::new();
        for (s, ups) in self.upstream.iter().enumerate() {
            for &u in ups {
                if let (Some((ls, ns)), Some((lu, nu))) = (layer_of[s], layer_of[u])
                    && lu > ls
                {
                    out.push(LayerViolation {
                        stack: self.ids[s].clone(),
                        stack_layer: ns.to_string(),
                        upstream: self.ids[u].clone(),
                        upstream_layer: nu.to_string(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.stack, &a.upstream).cmp(&(&b.stack, &b.upstream)));
        out
    }

    /// Graphviz rendering, edges pointing from a stack to what it depends on.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph stacks {\n  rankdir=LR;\n");
        let quote = |id: &str| format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\""));
        let mut ids: Vec<&String> = self.ids.iter().collect();
        ids.sort();
        for id in ids {
            out.push_str(&format!("  {};\n", quote(id)));
        }
        for (s, u) in self.edges() {
            out.push_str(&format!("  {} -> {};\n", quote(s), quote(u)));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> StackGraph {
        let mut g = StackGraph::new((0..n).map(|i| format!("s{i:02}")));
        for (a, b) in edges {
            g.add_edge(*a, *b);
        }
        g
    }

    #[test]
    fn finds_and_prints_a_cycle() {
        let g = graph(4, &[(0, 1), (1, 2), (2, 0), (3, 0)]);
        assert_eq!(g.cycles(), vec![vec!["s00", "s01", "s02", "s00"]]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = graph(2, &[(1, 1)]);
        assert_eq!(g.cycles(), vec![vec!["s01", "s01"]]);
    }

    #[test]
    fn dependents_are_transitive_with_via() {
        // s2 -> s1 -> s0, s3 -> s0
        let g = graph(4, &[(1, 0), (2, 1), (3, 0)]);
        let mut d = g.dependents(&[0]);
        d.sort();
        assert_eq!(d, vec![(1, 0), (2, 1), (3, 0)]);
    }

    #[test]
    fn layer_violation_names_both_stacks() {
        let g = graph(2, &[(0, 1)]);
        let v = g.layer_violations(&[Some((0, "network")), Some((3, "data"))]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].stack, "s00");
        assert_eq!(v[0].upstream, "s01");
        assert!(
            graph(2, &[(1, 0)])
                .layer_violations(&[Some((0, "network")), Some((3, "data"))])
                .is_empty()
        );
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let n = 50_000;
        let edges: Vec<(usize, usize)> = (1..n).map(|i| (i, i - 1)).collect();
        let g = graph(n, &edges);
        assert!(g.cycles().is_empty());
        assert_eq!(g.dependents(&[0]).len(), n - 1);
    }

    /// Naive reachability: is `to` reachable from `from` along upstream edges?
    fn reaches(g: &StackGraph, from: usize, to: usize) -> bool {
        let mut seen = vec![false; g.len()];
        let mut stack = vec![from];
        while let Some(v) = stack.pop() {
            for &u in g.upstream_of(v) {
                if u == to {
                    return true;
                }
                if !seen[u] {
                    seen[u] = true;
                    stack.push(u);
                }
            }
        }
        false
    }

    proptest! {
        /// A graph has a cycle exactly when some node reaches itself, and every reported
        /// cycle is a real closed walk.
        #[test]
        fn cycles_match_naive_reachability(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12), 0..30)) {
            let edges: Vec<_> = raw.into_iter().filter(|(a, b)| *a < n && *b < n).collect();
            let g = graph(n, &edges);
            let naive = (0..n).any(|v| reaches(&g, v, v));
            let cycles = g.cycles();
            prop_assert_eq!(naive, !cycles.is_empty());
            for c in cycles {
                prop_assert_eq!(c.first(), c.last());
                for w in c.windows(2) {
                    let (a, b) = (g.index_of(&w[0]).unwrap(), g.index_of(&w[1]).unwrap());
                    prop_assert!(g.upstream_of(a).contains(&b));
                }
            }
        }

        /// `dependents` returns exactly the nodes that reach a seed.
        #[test]
        fn dependents_match_naive(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12), 0..30), seed in 0usize..12) {
            let edges: Vec<_> = raw.into_iter().filter(|(a, b)| *a < n && *b < n).collect();
            let seed = seed % n;
            let g = graph(n, &edges);
            let mut got: Vec<usize> = g.dependents(&[seed]).into_iter().map(|(d, _)| d).collect();
            got.sort();
            let want: Vec<usize> = (0..n).filter(|&v| v != seed && reaches(&g, v, seed)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
