//! Test fixtures shared by the integration tests. Each `tests/*.rs` is its own crate and uses
//! part of this, hence `dead_code` allowed here.
//!
//! | module  | what                                                                   |
//! |---------|------------------------------------------------------------------------|
//! | `bags`  | synthetic bags with known values, their connections, payloads, frames  |
//! | `cli`   | the binary, temp dirs, ffmpeg and lerobot venvs present or SKIPPED      |
//! | `read`  | reading outputs back: file trees, JSON, parquet rows                   |
//! | `same`  | "the same dataset": tables, stats, decoded frames                      |
//! | `fuzz`  | the mutation fuzzer's generator, mutations and loop                    |
//! | `golden`| golden files of the shared test data                                    |

#![allow(dead_code)]

pub mod bags;
pub mod cli;
pub mod fuzz;
pub mod golden;
pub mod read;
pub mod same;

use std::path::{Path, PathBuf};

// Re-exported for the tests that name them from `common`; a crate that does not is fine.
#[allow(unused_imports)]
pub use bags::{CameraBag, FRAME_H, FRAME_W, START, SyntheticBag, frame_rgb, jpeg, jpeg_frame};
#[allow(unused_imports)]
pub use cli::{BIN, ffmpeg_present, lerobot_pythons, tmp, tmp_in};

/// `../shared/testdata`, or None (with a SKIPPED line saying why) when it is absent.
pub fn testdata() -> Option<PathBuf> {
    testdata_at("")
}

/// `../shared/testdata/<sub>`, or None (with a SKIPPED line saying why) when it is absent.
pub fn testdata_at(sub: &str) -> Option<PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    let dir = if sub.is_empty() { base } else { base.join(sub) };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; this test needs the shared test data",
            dir.display()
        );
        None
    }
}

/// The committed demo bag, `testdata/demo.bag`.
pub fn demo_bag() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/demo.bag")
}
