//! The core's top-level modules form layers, not circles: a module that
//! uses another may not be used by it, directly or through others. Read
//! from the source (every `crate::module` path, tests included), so a new
//! circle fails here rather than in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    // The crate root and tests of the layering itself are no module.
    (name != "lib" && name != "layering_tests").then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` names as `crate::name` or inside `crate::{…}`. The
/// crate root's re-exports `crate::Error` and `crate::Result` are `error`'s.
fn used_modules(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut name = |n: String| {
        let n = if n == "Error" || n == "Result" {
            "error".to_string()
        } else {
            n
        };
        if modules.contains(&n) {
            used.insert(n);
        }
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for part in group.split(',') {
                    name(ident(part.trim()));
                }
            }
            None => name(ident(rest)),
        }
    }
    used
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(used_modules(&text, &modules));
        uses.remove(&module);
    }
    graph
}

/// A circle through the graph, as the modules along it, if there is one.
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(graph, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_have_no_circle() {
    let graph = graph();
    assert!(graph.len() > 5, "found too few modules: {graph:?}");
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "the core's modules use each other in a circle: {}\n{graph:#?}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn the_criu_driver_knows_nothing_above_it() {
    let graph = graph();
    let criu = &graph["criu"];
    assert!(
        criu.iter().all(|m| m == "error" || m == "fdpass"),
        "criu uses {criu:?}"
    );
}

#[test]
fn the_reader_sees_paths_and_groups() {
    let modules = ["a", "b", "c", "error"].map(String::from).into();
    let text = "use crate::a::x;\nuse crate::{b::y, Result};\nlet _ = crate::zzz::q;";
    let want: BTreeSet<String> = ["a", "b", "error"].map(String::from).into();
    assert_eq!(used_modules(text, &modules), want);
}

#[test]
fn a_circle_is_found_and_layers_are_not_one() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_circle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    let circle = find_circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(circle, ["a", "b", "c", "a"]);
}
