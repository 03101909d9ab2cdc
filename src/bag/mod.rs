//! Reading ROS1 bags (format 2.0), one way down: the file and its records, the index, bounded
//! decompression, the chunk reader; recovery as another way to build an index, and `open`,
//! which picks between them. Plus the project's own bag writer (tests, demo, repaired copies).

pub mod chunk_reader;
mod decompress;
pub mod file;
pub mod index;
mod open;
pub mod record;
pub(crate) mod recover;
pub mod writer;

pub use file::BagFile;
pub(crate) use file::BagHeader;
pub use index::BagIndex;
pub(crate) use index::{ChunkCompression, ChunkInfo, Connection};
pub use recover::{RecoveryNote, RecoveryReason};

/// The submodules in layer order, lowest first: a module may import only modules listed
/// before it (checked by a test that reads their `use` lines). `writer` needs only `record`.
#[cfg(test)]
const LAYERS: &[&str] = &[
    "record",
    "writer",
    "file",
    "index",
    "decompress",
    "chunk_reader",
    "recover",
    "open",
];

#[cfg(test)]
mod tests {
    use super::LAYERS;

    /// Splits `a, b::{c, d}` at its top-level commas.
    fn top_level(list: &str) -> Vec<&str> {
        let (mut out, mut depth, mut from) = (Vec::new(), 0i32, 0);
        for (i, c) in list.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(&list[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
        out.push(&list[from..]);
        out
    }

    /// The first path segment of every item a source file imports from its sibling `bag`
    /// modules (`use super::x` at the top level, `use crate::bag::x` anywhere), with the line
    /// the `use` starts on.
    fn imports(src: &str) -> Vec<(String, usize)> {
        let lines: Vec<&str> = src.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let start = i;
            let top = !lines[i].starts_with(char::is_whitespace);
            let line = lines[i].trim_start();
            if line.starts_with("use ") || line.starts_with("pub use ") {
                let mut stmt = line.to_string();
                while !stmt.contains(';') && i + 1 < lines.len() {
                    i += 1;
                    stmt.push_str(lines[i].trim());
                }
                let stmt: String = stmt.split_whitespace().collect();
                let stmt = stmt.trim_start_matches("pub").trim_start_matches("use");
                let rest = match (
                    stmt.strip_prefix("super::"),
                    stmt.strip_prefix("crate::bag::"),
                ) {
                    (Some(r), _) if top => Some(r),
                    (_, Some(r)) => Some(r),
                    _ => None,
                };
                if let Some(rest) = rest {
                    let rest = rest.trim_end_matches(';');
                    let items = match rest.strip_prefix('{') {
                        Some(group) => top_level(group.strip_suffix('}').unwrap_or(group)),
                        None => vec![rest],
                    };
                    for item in items {
                        let first = item.split("::").next().unwrap_or("").trim();
                        if !first.is_empty() {
                            out.push((first.to_string(), start + 1));
                        }
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// The module an imported name belongs to: itself for a module, the module `mod.rs`
    /// re-exports it from for a type (`BagFile` is `file`'s).
    fn module_of(name: &str, mod_rs: &str) -> Option<String> {
        if LAYERS.contains(&name) {
            return Some(name.to_string());
        }
        for line in mod_rs.lines().filter(|l| l.starts_with("pub use ")) {
            let stmt: String = line.split_whitespace().collect();
            let Some((module, items)) = stmt
                .trim_start_matches("pubuse")
                .trim_end_matches(';')
                .split_once("::")
            else {
                continue;
            };
            let items = items.trim_start_matches('{').trim_end_matches('}');
            if top_level(items)
                .iter()
                .any(|i| i.rsplit("::").next() == Some(name))
            {
                return Some(module.to_string());
            }
        }
        None
    }

    #[test]
    fn every_bag_module_imports_only_lower_layers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bag");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("src/bag is readable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".rs") && n != "mod.rs")
            .map(|n| n.trim_end_matches(".rs").to_string())
            .collect();
        files.sort();
        let mut listed: Vec<String> = LAYERS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed, "LAYERS must list every file of src/bag");
        let mod_rs = std::fs::read_to_string(dir.join("mod.rs")).expect("readable");
        let mut wrong = Vec::new();
        let mut seen = 0;
        for (layer, name) in LAYERS.iter().enumerate() {
            let src = std::fs::read_to_string(dir.join(format!("{name}.rs"))).expect("readable");
            for (item, line) in imports(&src) {
                seen += 1;
                match module_of(&item, &mod_rs) {
                    Some(m) => match LAYERS.iter().position(|l| *l == m) {
                        Some(at) if at < layer => {}
                        _ => wrong.push(format!("{name}.rs:{line} imports {m} ({item})")),
                    },
                    None => wrong.push(format!("{name}.rs:{line} imports unknown {item}")),
                }
            }
        }
        assert!(seen > 10, "the parser found only {seen} imports");
        assert!(
            wrong.is_empty(),
            "imports at or above their own layer: {wrong:?}"
        );
    }

    #[test]
    fn the_import_parser_sees_groups_reexports_and_crate_paths() {
        let src = "use std::io;\nuse super::{file::BagFile, index::{A, B}};\n\
                   use crate::bag::recover::x;\npub use super::BagIndex;\n\
                   mod tests {\n    use super::*;\n    use crate::bag::open::y;\n}\n";
        let got: Vec<(String, usize)> = imports(src);
        let names: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(names, ["file", "index", "recover", "BagIndex", "open"]);
        assert_eq!(got[2].1, 3);
        let mod_rs = "pub use index::{BagIndex, ChunkInfo};\npub use file::BagFile;\n";
        assert_eq!(module_of("BagIndex", mod_rs).as_deref(), Some("index"));
        assert_eq!(module_of("BagFile", mod_rs).as_deref(), Some("file"));
        assert_eq!(module_of("open", mod_rs).as_deref(), Some("open"));
        assert_eq!(module_of("Nope", mod_rs), None);
    }
}
