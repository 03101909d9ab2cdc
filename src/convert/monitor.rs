//! The memory monitor of a conversion: samples the process tree's RSS every
//! [`MONITOR_INTERVAL`], keeps the peaks for the report, and stops the run (cancelling every
//! budget) when the tree passes the ceiling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::memory::plan::MemoryPlan;
use crate::memory::{MemorySnapshot, snapshot};

/// How often the memory monitor samples the process (10 ms).
const MONITOR_INTERVAL: Duration = Duration::from_millis(10);

/// Memory seen while the pipeline ran (sampled every [`MONITOR_INTERVAL`]).
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    pub(crate) peak_anon: AtomicU64,
    pub(crate) peak_file: AtomicU64,
    pub(crate) peak_rss: AtomicU64,
    pub(crate) peak_allocated: AtomicU64,
    /// Peak summed RSS of this process and its children (the ffmpeg encoders).
    pub(crate) peak_tree: AtomicU64,
    /// Peak summed RSS of the children alone.
    pub(crate) peak_children: AtomicU64,
    /// Peak RSS per kind of child (its label), for the report.
    pub(crate) child_peaks: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// First reading of the tree's RSS over the ceiling, 0 if none.
    pub(crate) over_ceiling: AtomicU64,
    pub(crate) frames_written: AtomicU64,
    /// The terminal progress line, when shown.
    pub(crate) progress: std::sync::OnceLock<crate::progress::Progress>,
}

impl Monitor {
    fn observe(&self, s: &MemorySnapshot) {
        self.peak_anon.fetch_max(s.rss_anon, Ordering::Relaxed);
        self.peak_file.fetch_max(s.rss_file, Ordering::Relaxed);
        self.peak_rss.fetch_max(s.rss(), Ordering::Relaxed);
        self.peak_allocated
            .fetch_max(s.allocated, Ordering::Relaxed);
        self.peak_tree.fetch_max(s.rss(), Ordering::Relaxed);
    }

    /// Records the children's readings (label, RSS) taken with `s`; returns the tree's RSS.
    pub(crate) fn observe_tree(&self, s: &MemorySnapshot, children: &[(String, u64)]) -> u64 {
        self.observe(s);
        let kids: u64 = children.iter().map(|c| c.1).sum();
        let tree = s.rss() + kids;
        self.peak_tree.fetch_max(tree, Ordering::Relaxed);
        self.peak_children.fetch_max(kids, Ordering::Relaxed);
        if !children.is_empty() {
            let mut peaks = self.child_peaks.lock().unwrap_or_else(|p| p.into_inner());
            for (label, rss) in children {
                let e = peaks.entry(label.clone()).or_insert(0);
                *e = (*e).max(*rss);
            }
        }
        tree
    }

    /// The error of a run stopped by the monitor: the tree's RSS passed the ceiling.
    pub(crate) fn over_ceiling_error(&self, ceiling: u64) -> Option<Error> {
        let rss = self.over_ceiling.load(Ordering::Relaxed);
        (rss > 0).then(|| {
            Error::over_budget(
                format!(
                    "the resident memory of the process and its children ({})",
                    crate::memory::format_bytes(rss)
                ),
                rss,
                ceiling,
                ceiling,
            )
        })
    }
}

/// Runs the monitor thread until `stop`; cancels the budgets if the tree's RSS (this process
/// plus its registered children, see [`crate::memory::tree`]) passes the ceiling.
pub(crate) fn spawn_monitor(
    monitor: Arc<Monitor>,
    stop: Arc<AtomicBool>,
    mem: MemoryPlan,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let s = snapshot();
            let tree = monitor.observe_tree(&s, &crate::memory::tree::children());
            if tree > mem.tree_ceiling && monitor.over_ceiling.load(Ordering::Relaxed) == 0 {
                monitor.over_ceiling.store(tree, Ordering::Relaxed);
                mem.cancel();
            }
            std::thread::sleep(MONITOR_INTERVAL);
        }
    })
}
