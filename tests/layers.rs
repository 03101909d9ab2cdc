//! The module graph is one-way: every top-level module may import only modules of a lower
//! layer (the table in `docs/architecture.md`), and inside a module no two submodules import
//! each other in a cycle. Read from the sources, so a new back-edge fails here and not in a
//! reviewer's head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, bottom layer first. A module may `use` only modules of lower layers.
/// Keep in step with the "Layers" table of docs/architecture.md.
const LAYERS: &[&[&str]] = &[
    // Leaves: units, time formatting, child-process helpers, the command-line definition.
    &["units", "timefmt", "process", "cli"],
    // The one error type.
    &["error"],
    // Diagnostics and memory (budgets, measurement, limits): below everything that works.
    &["diag", "memory"],
    // Reading ROS 1 bags (file -> records -> index -> decompress -> chunks); message decoding;
    // the progress line.
    &["bag", "msg", "progress"],
    // ROS 2 storage (MCAP, SQLite) building the same index types; the demo bag writer.
    &["ros2", "demo"],
    // One input abstraction over ROS 1 and ROS 2.
    &["input"],
    // Alignment of decoded samples into frames; the dataset writer (LeRobot v3.0).
    &["align", "dataset"],
    // Other dataset layouts (v2.1) and conversions between them.
    &["layout"],
    // The conversion: config, mapping, plan, pipeline, runs, merge.
    &["convert"],
    // One file per verb.
    &["commands"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b/mod.rs` -> `["a", "b"]`; `src/a/c.rs` -> `["a", "c"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments and without `#[cfg(test)] mod tests { ... }` (tests may reach
/// anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segments after `prefix` (`crate::` or `super::`), including each item of a
/// `prefix{a::x, b}` group.
fn targets(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.push(ident_at(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident_at(rest));
        }
    }
    out.retain(|t| !t.is_empty() && t != "self");
    out
}

struct Module {
    path: Vec<String>,
    code: String,
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| Module {
            path: module_path(&src, &f),
            code: code_of(&std::fs::read_to_string(&f).unwrap()),
        })
        .filter(|m| !m.path.is_empty())
        .collect()
}

#[test]
fn every_module_imports_only_lower_layers() {
    let mut wrong = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for m in modules() {
        let top = &m.path[0];
        let Some(own) = layer_of(top) else {
            unknown.insert(top.clone());
            continue;
        };
        for t in targets(&m.code, "crate::") {
            if &t == top {
                continue;
            }
            match layer_of(&t) {
                Some(l) if l < own => {}
                Some(_) => {
                    wrong.insert(format!("{} imports crate::{t}", m.path.join("::")));
                }
                None => {
                    unknown.insert(t);
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (tests/layers.rs and docs/architecture.md): {unknown:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports at or above the importer's layer:\n  {}",
        wrong.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn no_submodules_import_each_other_in_a_cycle() {
    let mods = modules();
    // For each parent module: edges between its direct children (`crate::a::b` or `super::b`
    // from a sibling `a::c`; references to the parent's own items are not edges).
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for m in &mods {
        if m.path.len() >= 2 {
            children
                .entry(m.path[..m.path.len() - 1].to_vec())
                .or_default()
                .insert(m.path[m.path.len() - 1].clone());
        }
    }
    let mut edges: BTreeMap<(Vec<String>, String), BTreeSet<String>> = BTreeMap::new();
    for m in &mods {
        // Each ancestor level: the child of `parent` this file belongs to.
        for depth in 1..m.path.len() {
            let parent = m.path[..depth].to_vec();
            let me = m.path[depth].clone();
            let Some(siblings) = children.get(&parent) else {
                continue;
            };
            // `crate::parent::x` from anywhere below `parent::me`.
            let crate_prefix = format!("crate::{}::", parent.join("::"));
            let mut found = targets(&m.code, &crate_prefix);
            // `super::x` from a direct child of `parent`.
            if m.path.len() == depth + 1 {
                found.extend(targets(&m.code, "super::"));
            }
            for t in found {
                if t != me && siblings.contains(&t) {
                    edges
                        .entry((parent.clone(), me.clone()))
                        .or_default()
                        .insert(t);
                }
            }
        }
    }
    let mut cycles = Vec::new();
    for ((parent, from), tos) in &edges {
        for to in tos {
            // A path back from `to` to `from` among the same parent's children.
            let mut seen = BTreeSet::new();
            let mut stack = vec![to.clone()];
            while let Some(n) = stack.pop() {
                if &n == from {
                    cycles.push(format!("{0}::{from} <-> {0}::{to}", parent.join("::")));
                    break;
                }
                if seen.insert(n.clone())
                    && let Some(next) = edges.get(&(parent.clone(), n))
                {
                    stack.extend(next.iter().cloned());
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "submodules importing each other in a cycle:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_paths() {
    let code = "use crate::{bag::X, msg::{a, b}, error};\nlet x = crate::memory::f();\nuse super::{sib::Y, self};";
    assert_eq!(targets(code, "crate::"), ["bag", "msg", "error", "memory"]);
    assert_eq!(targets(code, "super::"), ["sib"]);
}
