//! The mutation fuzzer that runs on stable Rust (cargo-fuzz needs nightly), shared by
//! tests/fuzz.rs (ROS 1 bags, definitions, payloads) and tests/fuzz_ros2.rs (MCAP, SQLite,
//! CDR): a seeded generator, mutations biased to length fields, and the loop that feeds
//! mutated seeds to a target for `FUZZ_SECONDS` and saves any input that panics under
//! `target/fuzz-crashes/` to become a regression test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deterministic xorshift generator (seeded by FUZZ_SEED, default 1).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1u64);
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Time each target runs: `FUZZ_SECONDS` (default 2 s, a smoke run inside `cargo test`).
pub fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0f64);
    Duration::from_secs_f64(secs)
}

/// The crate's root (`CARGO_MANIFEST_DIR`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// One random mutation of `data`, biased to the places bags keep lengths (u32 prefixes).
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
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

/// Saves an input that made `kind`'s target panic; its path.
pub fn save_crash(kind: &str, input: &[u8]) -> PathBuf {
    let dir = root().join("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{}.bin", std::process::id()));
    let _ = std::fs::write(&path, input);
    path
}

/// Feeds `target(k, input)` inputs for the [`budget`]: seed `k` of `seeds` (chosen at random)
/// after 1 to `max_mutations + 1` mutations. A panic fails the test naming `what` and the
/// saved input. Returns how many inputs ran.
pub fn fuzz(
    kind: &str,
    what: &str,
    seeds: &[Vec<u8>],
    max_mutations: usize,
    target: impl Fn(usize, &[u8]),
) -> u64 {
    let mut rng = Rng::new();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let k = rng.below(seeds.len());
        let mut data = seeds[k].clone();
        for _ in 0..=rng.below(max_mutations) {
            mutate(&mut rng, &mut data, seeds);
        }
        if catch_unwind(AssertUnwindSafe(|| target(k, &data))).is_err() {
            panic!(
                "{what} panicked; input saved to {}",
                save_crash(kind, &data).display()
            );
        }
        runs += 1;
    }
    runs
}

/// [`fuzz`] for readers of files: each input is written to `input.<ext>` in a temp dir and
/// `target` gets its path.
pub fn fuzz_files(
    kind: &str,
    what: &str,
    ext: &str,
    seeds: &[Vec<u8>],
    target: impl Fn(&Path),
) -> u64 {
    let dir = std::env::temp_dir().join(format!("b2d-fuzz-{kind}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("input.{ext}"));
    let runs = fuzz(kind, what, seeds, 4, |_, data| {
        std::fs::write(&file, data).unwrap();
        target(&file);
    });
    let _ = std::fs::remove_dir_all(&dir);
    runs
}
