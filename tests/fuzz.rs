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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bag2dataset::commands::dump::{DumpFilter, dump_bag};
use bag2dataset::msg::MessageSchema;

/// Deterministic xorshift generator (seeded by FUZZ_SEED, default 1).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1u64);
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0f64);
    Duration::from_secs_f64(secs)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

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

/// One random mutation of `data`, biased to the places bags keep lengths (u32 prefixes).
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let n = data.len();
    match rng.below(9) {
        0 if n > 0 => {
            let i = rng.below(n);
            data[i] ^= 1 << rng.below(8);
        }
        1 if n > 0 => {
            let i = rng.below(n);
            data[i] = rng.next() as u8;
        }
        2 if n >= 4 => {
            // a length field: set a u32 to an interesting value
            let i = rng.below(n - 3);
            let v: u32 = match rng.below(6) {
                0 => 0,
                1 => u32::MAX,
                2 => 0x8000_0000,
                3 => (n as u32).wrapping_add(rng.below(16) as u32),
                4 => u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]])
                    .wrapping_add(1),
                _ => rng.next() as u32 & 0xFFFF,
            };
            data[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        3 if n > 0 => data.truncate(rng.below(n)),
        4 if n > 0 => {
            let i = rng.below(n);
            let len = rng.below(64).min(n - i);
            data.drain(i..i + len);
        }
        5 if n > 0 => {
            let i = rng.below(n);
            let len = rng.below(64).min(n - i);
            let chunk: Vec<u8> = data[i..i + len].to_vec();
            let at = rng.below(n);
            data.splice(at..at, chunk);
        }
        6 => {
            let other = &seeds[rng.below(seeds.len())];
            if !other.is_empty() && n > 0 {
                let from = rng.below(other.len());
                let len = rng.below(256).min(other.len() - from);
                let at = rng.below(n);
                let end = (at + len).min(n);
                data.splice(at..end, other[from..from + len].iter().copied());
            }
        }
        _ if n > 0 => {
            let i = rng.below(n);
            data.insert(i, rng.next() as u8);
        }
        _ => data.push(rng.next() as u8),
    }
}

fn save_crash(kind: &str, input: &[u8]) -> PathBuf {
    let dir = root().join("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{}.bin", std::process::id()));
    let _ = std::fs::write(&path, input);
    path
}

#[test]
fn fuzz_bag_reader() {
    let seeds = seed_bags();
    let mut rng = Rng::new();
    let dir = std::env::temp_dir().join(format!("b2d-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.bag");
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut data, &seeds);
        }
        std::fs::write(&file, &data).unwrap();
        let filter = DumpFilter {
            limit: Some(2000),
            ..DumpFilter::default()
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _ = bag2dataset::commands::info::bag_info(&file);
            let _ = dump_bag(&file, &filter, |_| true);
        }));
        if outcome.is_err() {
            panic!(
                "bag reader panicked; input saved to {}",
                save_crash("bag", &data).display()
            );
        }
        runs += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
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
    let mut rng = Rng::new();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let k = rng.below(seeds.len());
        let mut def = bytes[k].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut def, &bytes);
        }
        let text = String::from_utf8_lossy(&def).into_owned();
        let msgtype = seeds[k].0.clone();
        if catch_unwind(|| {
            if let Ok(s) = MessageSchema::parse(&msgtype, &text) {
                let _ = s.decode(&[]);
                let _ = s.field_path("header.stamp");
            }
        })
        .is_err()
        {
            panic!(
                "definition parser panicked; input saved to {}",
                save_crash("definition", &def).display()
            );
        }
        runs += 1;
    }
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
    let mut rng = Rng::new();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let k = rng.below(cases.len());
        let mut data = payloads[k].clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut data, &payloads);
        }
        let schema = &cases[k].0;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(v) = schema.decode(&data) {
                let _ = bag2dataset::msg::to_golden_json(schema, &v);
            }
        }));
        if outcome.is_err() {
            panic!(
                "decoder panicked; input saved to {}",
                save_crash("payload", &data).display()
            );
        }
        runs += 1;
    }
    eprintln!("fuzz_message_decoder: {runs} inputs");
    assert!(runs > 0);
}
