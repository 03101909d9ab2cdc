//! The mutation fuzzer of tests/fuzz.rs (same generator and mutations) aimed at the ROS 2
//! readers: the MCAP record parser (`.mcap` files of ../shared/testdata/ros2, mutated, opened
//! and dumped through `info` / `dump`) and the CDR decoder (real ROS 2 payloads with their
//! schemas, mutated). Any panic is a failure, its input saved under `target/fuzz-crashes/`.
//! A third target feeds mutated `.db3` files to the SQLite reader the same way.
//! `FUZZ_SECONDS` (default 2 s) per target; the long runs of docs/reliability.md use
//! `FUZZ_SECONDS=600 cargo test --release --test fuzz_ros2 -- --nocapture`.

mod common;

use std::path::PathBuf;

use bag2dataset::commands::dump::{DumpFilter, dump_bag};
use bag2dataset::input::Recording;
use bag2dataset::msg::MessageSchema;
use common::fuzz::{fuzz, fuzz_files, root};

/// Storage files of the ROS 2 corpus with this extension (bare or inside rosbag2 directories),
/// under 1 MiB.
fn corpus_files(ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["real", "generated"] {
        let Ok(rd) = std::fs::read_dir(root().join("../shared/testdata/ros2").join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let candidates: Vec<PathBuf> = if p.is_dir() {
                std::fs::read_dir(&p)
                    .map(|r| r.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default()
            } else {
                vec![p]
            };
            out.extend(candidates.into_iter().filter(|c| {
                c.extension().is_some_and(|x| x == ext)
                    && std::fs::metadata(c).is_ok_and(|m| m.len() < 1 << 20)
            }));
        }
    }
    out.sort();
    out
}

/// Every `.mcap` file of the ROS 2 corpus under 1 MiB.
fn mcap_files() -> Vec<PathBuf> {
    corpus_files("mcap")
}

/// `info` and `dump` of a mutated recording: errors are fine, panics are not.
fn read_all(file: &std::path::Path) {
    let filter = DumpFilter {
        limit: Some(2000),
        ..DumpFilter::default()
    };
    let _ = bag2dataset::commands::info::bag_info(file);
    let _ = dump_bag(file, &filter, |_| true);
}

#[test]
fn fuzz_mcap_reader() {
    let files = mcap_files();
    if files.is_empty() {
        eprintln!("SKIPPED: no .mcap seeds (../shared/testdata/ros2 is absent)");
        return;
    }
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let runs = fuzz_files("mcap", "MCAP reader", "mcap", &seeds, read_all);
    eprintln!("fuzz_mcap_reader: {runs} inputs");
    assert!(runs > 0);
}

/// Mutated `.db3` files (SQLite parses the pages; our index pass, units and decoding must
/// turn whatever it returns into errors, never panics).
#[test]
fn fuzz_sqlite_reader() {
    let files = corpus_files("db3");
    if files.is_empty() {
        eprintln!("SKIPPED: no .db3 seeds (../shared/testdata/ros2 is absent)");
        return;
    }
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let runs = fuzz_files("db3", "SQLite reader", "db3", &seeds, read_all);
    eprintln!("fuzz_sqlite_reader: {runs} inputs");
    assert!(runs > 0);
}

#[test]
fn fuzz_cdr_decoder() {
    let mut cases: Vec<(MessageSchema, Vec<u8>)> = Vec::new();
    for f in mcap_files() {
        let Ok(rec) = Recording::open(&f) else {
            continue;
        };
        let index = rec.index();
        for ci in 0..index.chunks.len() {
            let Ok(unit) = rec.read_unit(ci, None, false) else {
                continue;
            };
            for m in unit.messages().take(20) {
                if let Ok(s) = rec.schema(m.conn) {
                    cases.push((s, m.data.to_vec()));
                }
            }
        }
    }
    if cases.is_empty() {
        eprintln!("SKIPPED: no ROS 2 payloads (../shared/testdata/ros2 is absent)");
        return;
    }
    let payloads: Vec<Vec<u8>> = cases.iter().map(|(_, p)| p.clone()).collect();
    let runs = fuzz("cdr", "CDR decoder", &payloads, 3, |k, data| {
        let schema = &cases[k].0;
        if let Ok(v) = schema.decode(data) {
            let _ = bag2dataset::msg::to_golden_json(schema, &v);
        }
        if let Ok(p) = schema.field_path("header.stamp") {
            let _ = schema.decode_fields(data, &[p]);
        }
    });
    eprintln!(
        "fuzz_cdr_decoder: {runs} inputs ({} seed payloads)",
        cases.len()
    );
    assert!(runs > 0);
}
