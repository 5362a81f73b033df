//! The derivation graph an evaluation produces.

use std::collections::BTreeMap;
use std::path::PathBuf;

use drv_formats::{Derivation, StorePath};
use drv_store::LocalStore;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{json, Value};

/// What a derivation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A recipe's package.
    Package,
    /// A test of a recipe; its output is the report.
    Test(String),
    /// A pinned download.
    Fetch,
    /// A toolchain root file system assembled from pinned `.deb`s; its
    /// node's `recipe` is the lock file.
    Toolchain,
}

/// Where a derivation came from.
#[derive(Debug, Clone)]
pub struct Node {
    pub recipe: PathBuf,
    pub kind: NodeKind,
    /// The program `drv run` starts, relative to `out`.
    pub main: Option<String>,
}

/// Every derivation of an evaluation, as a DAG with an edge from each
/// derivation to each of its input derivations.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The `.drv` of the requested recipe's package.
    pub root: StorePath,
    /// The `.drv`s of the requested recipe's tests.
    pub tests: Vec<StorePath>,
    pub derivations: BTreeMap<StorePath, (Derivation, Node)>,
    pub graph: DiGraph<StorePath, ()>,
}

/// An evaluation under construction.
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    derivations: BTreeMap<StorePath, (Derivation, Node)>,
    graph: DiGraph<StorePath, ()>,
    index: BTreeMap<StorePath, NodeIndex>,
    pub(crate) tests_by_recipe: BTreeMap<(PathBuf, String), StorePath>,
}

impl GraphBuilder {
    pub(crate) fn finish(self, root: StorePath, tests: Vec<StorePath>) -> Evaluation {
        Evaluation { root, tests, derivations: self.derivations, graph: self.graph }
    }

    pub(crate) fn insert(&mut self, path: StorePath, drv: Derivation, node: Node) {
        if self.derivations.contains_key(&path) {
            return;
        }
        let idx = self.graph.add_node(path.clone());
        for input in drv.input_derivations().keys() {
            if let Some(&to) = self.index.get(input) {
                self.graph.add_edge(idx, to, ());
            }
        }
        self.index.insert(path.clone(), idx);
        self.derivations.insert(path, (drv, node));
    }
}

impl Evaluation {
    /// Derivations in build order (inputs first).
    pub fn build_order(&self) -> Vec<StorePath> {
        let mut order = petgraph::algo::toposort(&self.graph, None).expect("derivation graphs are acyclic by construction");
        order.reverse();
        order.into_iter().map(|i| self.graph[i].clone()).collect()
    }

    pub fn get(&self, drv: &StorePath) -> Option<&(Derivation, Node)> {
        self.derivations.get(drv)
    }

    /// Graphviz, one node per derivation, edges from dependents to inputs.
    pub fn to_dot(&self, store: &LocalStore) -> String {
        let mut s = String::from("digraph drv {\n  rankdir = LR;\n  node [shape = box];\n");
        for idx in self.graph.node_indices() {
            let p = &self.graph[idx];
            let (_, node) = &self.derivations[p];
            let shape = match node.kind {
                NodeKind::Fetch => ", shape = note",
                NodeKind::Toolchain => ", shape = box3d",
                NodeKind::Test(_) => ", shape = hexagon",
                NodeKind::Package => "",
            };
            s.push_str(&format!("  \"{}\" [label = \"{}\"{shape}];\n", store.display(p), p.name().trim_end_matches(".drv")));
        }
        for e in self.graph.edge_indices() {
            let (a, b) = self.graph.edge_endpoints(e).expect("edge exists");
            s.push_str(&format!("  \"{}\" -> \"{}\";\n", store.display(&self.graph[a]), store.display(&self.graph[b])));
        }
        s.push_str("}\n");
        s
    }

    /// `{ nodes: [{drvPath, name, kind, recipe, outputs}], edges: [[from, to]] }`.
    pub fn to_json(&self, store: &LocalStore) -> Result<Value, drv_formats::FormatError> {
        let mut nodes = Vec::new();
        for p in self.build_order() {
            let (drv, node) = &self.derivations[&p];
            let outputs: BTreeMap<String, String> =
                drv.outputs().into_iter().map(|(k, o)| (k.clone(), store.display(&o.path))).collect();
            let kind = match &node.kind {
                NodeKind::Package => json!("package"),
                NodeKind::Test(t) => json!({ "test": t }),
                NodeKind::Fetch => json!("fetch"),
                NodeKind::Toolchain => json!("toolchain"),
            };
            nodes.push(json!({
                "drvPath": store.display(&p),
                "name": drv.name(),
                "kind": kind,
                "recipe": node.recipe.display().to_string(),
                "outputs": outputs,
            }));
        }
        let edges: Vec<Value> = self
            .graph
            .edge_indices()
            .map(|e| {
                let (a, b) = self.graph.edge_endpoints(e).expect("edge exists");
                json!([store.display(&self.graph[a]), store.display(&self.graph[b])])
            })
            .collect();
        Ok(json!({ "root": store.display(&self.root), "nodes": nodes, "edges": edges }))
    }
}
