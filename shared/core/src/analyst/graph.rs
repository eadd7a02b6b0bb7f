//! The service graph: who calls whom. Symptoms travel from callee to caller.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::domain::ServiceEdge;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    callees: BTreeMap<String, BTreeSet<String>>,
    callers: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn new(edges: &[ServiceEdge]) -> Graph {
        let mut g = Graph::default();
        for e in edges {
            if e.from == e.to {
                continue;
            }
            g.callees
                .entry(e.from.clone())
                .or_default()
                .insert(e.to.clone());
            g.callers
                .entry(e.to.clone())
                .or_default()
                .insert(e.from.clone());
        }
        g
    }

    pub fn contains(&self, s: &str) -> bool {
        self.callees.contains_key(s) || self.callers.contains_key(s)
    }

    pub fn callees(&self, s: &str) -> impl Iterator<Item = &String> {
        self.callees.get(s).into_iter().flatten()
    }

    pub fn callers(&self, s: &str) -> impl Iterator<Item = &String> {
        self.callers.get(s).into_iter().flatten()
    }

    /// Services reachable from `s` by following calls (callees, their callees, ...) up to
    /// `max_depth` hops, with their distance. Breadth-first, so each is visited once.
    pub fn downstream(&self, s: &str, max_depth: usize) -> Vec<(String, usize)> {
        self.walk(s, max_depth, &self.callees)
    }

    /// Services that reach `s` (its callers, their callers, ...) up to `max_depth` hops.
    pub fn upstream(&self, s: &str, max_depth: usize) -> Vec<(String, usize)> {
        self.walk(s, max_depth, &self.callers)
    }

    fn walk(
        &self,
        s: &str,
        max_depth: usize,
        next: &BTreeMap<String, BTreeSet<String>>,
    ) -> Vec<(String, usize)> {
        let mut seen = BTreeSet::new();
        seen.insert(s.to_string());
        let mut out = Vec::new();
        let mut queue = VecDeque::from([(s.to_string(), 0usize)]);
        while let Some((cur, d)) = queue.pop_front() {
            if d == max_depth {
                continue;
            }
            for n in next.get(&cur).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    out.push((n.clone(), d + 1));
                    queue.push_back((n.clone(), d + 1));
                }
            }
        }
        out
    }

    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.callees.keys().chain(self.callers.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: &str, b: &str) -> ServiceEdge {
        ServiceEdge {
            from: a.into(),
            to: b.into(),
        }
    }

    #[test]
    fn walks_both_ways_without_looping() {
        let g = Graph::new(&[
            edge("gw", "a"),
            edge("a", "b"),
            edge("b", "a"),
            edge("b", "db"),
        ]);
        let down: Vec<_> = g.downstream("gw", 5);
        assert_eq!(
            down,
            vec![("a".into(), 1), ("b".into(), 2), ("db".into(), 3)]
        );
        let up = g.upstream("db", 1);
        assert_eq!(up, vec![("b".into(), 1)]);
        assert!(g.contains("db") && !g.contains("zz"));
        assert_eq!(g.callers("a").count(), 2);
    }
}
