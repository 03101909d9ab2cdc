//! Diagnostics on stderr: warnings as they happen (stdout is data). Quiet runs (`--quiet`,
//! `--json`) silence them; the run report still carries them.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences (or restores) warnings on stderr.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints `warning: {msg}` on stderr unless quiet.
pub fn warn(msg: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("warning: {msg}");
    }
}
