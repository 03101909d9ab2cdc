//! A one-line progress display on stderr: shown only when stderr is a terminal and the run is
//! not `--quiet`/`--json`; redrawn at most every [`REDRAW_INTERVAL`]. `NO_COLOR` is respected
//! (the line has no colour anyway).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::memory::format_bytes;

/// Shortest time between two redraws (100 ms).
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes read out of a known total, with a label (the bag being converted).
#[derive(Debug)]
pub(crate) struct Progress {
    enabled: bool,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    state: Mutex<(Instant, String)>,
}

impl Progress {
    /// A display for `total` bytes; hidden unless `wanted` and stderr is a terminal.
    pub(crate) fn new(total: u64, wanted: bool) -> Self {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            started: Instant::now(),
            state: Mutex::new((Instant::now() - REDRAW_INTERVAL, String::new())),
        }
    }

    /// Names what is being worked on.
    pub(crate) fn set_label(&self, label: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = label.to_string();
        }
    }

    /// Adds `bytes` to the work done and redraws if it is time.
    pub(crate) fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !self.enabled {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if s.0.elapsed() < REDRAW_INTERVAL {
            return;
        }
        s.0 = Instant::now();
        let total = self.total.load(Ordering::Relaxed).max(1);
        let frac = (done as f64 / total as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let eta = if rate > 0.0 {
            (total.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        let line = format!(
            "\r[{}{}] {:>3.0}% {} / {}  {}/s  eta {:.0}s  {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            frac * 100.0,
            format_bytes(done),
            format_bytes(total),
            format_bytes(rate as u64),
            eta,
            s.1
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{line:<120.120}");
        let _ = err.flush();
    }

    /// Clears the line.
    pub(crate) fn finish(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:120}\r", "");
            let _ = err.flush();
        }
    }
}
