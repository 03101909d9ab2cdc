//! The golden files of the shared test data: beside each recording `<bag>.golden.jsonl` (one
//! line per message, an independent reader's decoding) and `<bag>.golden.meta.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The files under `dir/real` and `dir/generated` whose names `keep` accepts, sorted.
pub fn recordings(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["real", "generated"] {
        for e in std::fs::read_dir(dir.join(sub)).expect("readable testdata dir") {
            let p = e.expect("dir entry").path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if keep(&name) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The golden lines and the golden meta of `bag`.
pub fn golden(bag: &Path) -> (Vec<Value>, Value) {
    let lines =
        std::fs::read_to_string(format!("{}.golden.jsonl", bag.display())).expect("golden file");
    let meta = std::fs::read_to_string(format!("{}.golden.meta.json", bag.display()))
        .expect("golden meta");
    (
        lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("golden line is JSON"))
            .collect(),
        serde_json::from_str(&meta).expect("meta is JSON"),
    )
}

/// Fails listing every failure collected over the corpus, if any.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
