//! A mutation fuzzer that runs on stable Rust (cargo-fuzz needs nightly): seeds from
//! ../shared/testdata and the demo bag, mutated by bit flips, byte edits, length-field tweaks,
//! truncation, duplication and splicing, fed to
//!
//! - the bag reader (`BagFile::open`, the index, every chunk, every record, every message
//!   decoded through `dump_bag`),
//! - the message-definition parser (`MessageSchema::parse`),
//! - the message decoder (`MessageSchema::decode` / `decode_fields`).
//!
//! Any panic is a failure; the input is saved under `target/fuzz-crashes/` to become a
//! regression test. Errors are fine (that is what bad input should give). Each target runs for
//! `FUZZ_SECONDS` (default 2 s, a smoke run inside `cargo test`); the long runs of
//! docs/reliability.md use `FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture`.

mod common;

use std::path::PathBuf;

use bag2dataset::commands::dump::{DumpFilter, dump_bag};
use bag2dataset::msg::MessageSchema;
use common::fuzz::{fuzz, fuzz_files, root};

/// Seed bags: the demo bag and the small bags of the shared corpus (if present).
fn seed_bags() -> Vec<Vec<u8>> {
    let mut seeds = vec![std::fs::read(root().join("testdata/demo.bag")).expect("demo bag")];
    for sub in ["real", "generated"] {
        if let Ok(rd) = std::fs::read_dir(root().join("../shared/testdata").join(sub)) {
            let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                let name = p.to_string_lossy().to_string();
                if (name.ends_with(".bag") || name.ends_with(".active"))
                    && std::fs::metadata(&p)
                        .map(|m| m.len() < 400_000)
                        .unwrap_or(false)
                {
                    seeds.push(std::fs::read(&p).expect("seed"));
                }
            }
        }
    }
    seeds
}

#[test]
fn fuzz_bag_reader() {
    let seeds = seed_bags();
    let filter = DumpFilter {
        limit: Some(2000),
        ..DumpFilter::default()
    };
    let runs = fuzz_files("bag", "bag reader", "bag", &seeds, |file| {
        let _ = bag2dataset::commands::info::bag_info(file);
        let _ = dump_bag(file, &filter, |_| true);
    });
    eprintln!("fuzz_bag_reader: {runs} inputs");
    assert!(runs > 0);
}

/// (type, definition) pairs from the demo bag and the shared corpus.
fn seed_definitions() -> Vec<(String, String)> {
    let mut out = vec![
        (
            "sensor_msgs/JointState".into(),
            bag2dataset::demo::joint_state_definition(),
        ),
        (
            "sensor_msgs/CompressedImage".into(),
            bag2dataset::demo::compressed_image_definition(),
        ),
    ];
    if let Ok(rd) = std::fs::read_dir(root().join("../shared/testdata/real")) {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "bag"))
        {
            if let Ok(bag) = bag2dataset::bag::BagFile::open(&p)
                && let Ok((index, _)) = bag2dataset::bag::BagIndex::open(&bag)
            {
                for c in index.connections {
                    out.push((c.msgtype, c.definition));
                }
            }
        }
    }
    out
}

#[test]
fn fuzz_definition_parser() {
    let seeds = seed_definitions();
    let bytes: Vec<Vec<u8>> = seeds.iter().map(|(_, d)| d.as_bytes().to_vec()).collect();
    let runs = fuzz("definition", "definition parser", &bytes, 4, |k, def| {
        let text = String::from_utf8_lossy(def).into_owned();
        if let Ok(s) = MessageSchema::parse(&seeds[k].0, &text) {
            let _ = s.decode(&[]);
            let _ = s.field_path("header.stamp");
        }
    });
    eprintln!("fuzz_definition_parser: {runs} inputs");
    assert!(runs > 0);
}

#[test]
fn fuzz_message_decoder() {
    // Real payloads with their schemas, from the demo bag and the shared corpus.
    let mut cases: Vec<(MessageSchema, Vec<u8>)> = Vec::new();
    let mut bags = vec![root().join("testdata/demo.bag")];
    if let Ok(rd) = std::fs::read_dir(root().join("../shared/testdata/real")) {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        bags.extend(
            paths
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "bag")),
        );
    }
    for p in bags {
        let Ok(bag) = bag2dataset::bag::BagFile::open(&p) else {
            continue;
        };
        let Ok(index) = bag2dataset::bag::BagIndex::read(&bag) else {
            continue;
        };
        for chunk in &index.chunks {
            let Ok(data) = bag2dataset::bag::chunk_reader::read_chunk(&bag, chunk) else {
                continue;
            };
            for m in bag2dataset::bag::chunk_reader::messages(data.bytes())
                .flatten()
                .take(20)
            {
                if let Some(c) = index.connection(m.conn)
                    && let Ok(s) = MessageSchema::parse(&c.msgtype, &c.definition)
                {
                    cases.push((s, m.data.to_vec()));
                }
            }
        }
    }
    assert!(!cases.is_empty());
    let payloads: Vec<Vec<u8>> = cases.iter().map(|(_, p)| p.clone()).collect();
    let runs = fuzz("payload", "decoder", &payloads, 3, |k, data| {
        let schema = &cases[k].0;
        if let Ok(v) = schema.decode(data) {
            let _ = bag2dataset::msg::to_golden_json(schema, &v);
        }
    });
    eprintln!("fuzz_message_decoder: {runs} inputs");
    assert!(runs > 0);
}
