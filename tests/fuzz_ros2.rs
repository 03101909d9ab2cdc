//! The mutation fuzzer of tests/fuzz.rs (same generator and mutations) aimed at the ROS 2
//! readers: the MCAP record parser (`.mcap` files of ../shared/testdata/ros2, mutated, opened
//! and dumped through `info` / `dump`) and the CDR decoder (real ROS 2 payloads with their
//! schemas, mutated). Any panic is a failure, its input saved under `target/fuzz-crashes/`.
//! A third target feeds mutated `.db3` files to the SQLite reader the same way.
//! `FUZZ_SECONDS` (default 2 s) per target; the long runs of docs/reliability.md use
//! `FUZZ_SECONDS=600 cargo test --release --test fuzz_ros2 -- --nocapture`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bag2dataset::commands::dump::{DumpFilter, dump_bag};
use bag2dataset::input::Recording;
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
fn fuzz_mcap_reader() {
    let files = mcap_files();
    if files.is_empty() {
        eprintln!("SKIPPED: no .mcap seeds (../shared/testdata/ros2 is absent)");
        return;
    }
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut rng = Rng::new();
    let dir = std::env::temp_dir().join(format!("b2d-fuzz-mcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.mcap");
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
                "MCAP reader panicked; input saved to {}",
                save_crash("mcap", &data).display()
            );
        }
        runs += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
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
    let mut rng = Rng::new();
    let dir = std::env::temp_dir().join(format!("b2d-fuzz-db3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.db3");
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
                "SQLite reader panicked; input saved to {}",
                save_crash("db3", &data).display()
            );
        }
        runs += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
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
            if let Ok(p) = schema.field_path("header.stamp") {
                let _ = schema.decode_fields(&data, &[p]);
            }
        }));
        if outcome.is_err() {
            panic!(
                "CDR decoder panicked; input saved to {}",
                save_crash("cdr", &data).display()
            );
        }
        runs += 1;
    }
    eprintln!(
        "fuzz_cdr_decoder: {runs} inputs ({} seed payloads)",
        cases.len()
    );
    assert!(runs > 0);
}
