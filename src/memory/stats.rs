//! What the process holds right now: resident set split into anonymous and file-backed pages
//! (from `/proc/self/status`), and jemalloc's own counters (when jemalloc is the allocator).

use serde::Serialize;

/// One reading of the process's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemorySnapshot {
    /// Anonymous resident pages (heap, stacks).
    pub(crate) rss_anon: u64,
    /// File-backed resident pages (the mapped bag, the binary).
    pub(crate) rss_file: u64,
    /// Peak total RSS of the process so far (`VmHWM`).
    pub rss_peak: u64,
    /// jemalloc: bytes allocated by the application.
    pub(crate) allocated: u64,
    /// jemalloc: bytes in active pages.
    active: u64,
    /// jemalloc: bytes in physically resident pages it maps.
    pub(crate) resident: u64,
    /// jemalloc: bytes in active extents.
    mapped: u64,
    /// jemalloc: bytes retained for reuse, not returned to the OS.
    retained: u64,
}

impl MemorySnapshot {
    pub(crate) fn rss(&self) -> u64 {
        self.rss_anon + self.rss_file
    }
}

/// Hands the pages jemalloc keeps for reuse (freed but still resident, in every arena) back to
/// the OS. A conversion calls it before measuring its baseline, so that one started in a
/// process that converted before (a test binary, a library user) does not count the freed
/// memory of the previous run as its own.
pub(crate) fn release_freed_pages() {
    // MALLCTL_ARENAS_ALL (4096) names every arena; the control takes no value.
    // SAFETY: a valid NUL-terminated control name and null old/new pointers, as jemalloc's
    // `arena.<i>.purge` requires; it only returns unused pages to the OS.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// Reads the process's memory now. Fields that cannot be read (no /proc, another allocator)
/// are 0.
pub fn snapshot() -> MemorySnapshot {
    let mut s = MemorySnapshot::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let mut parts = line.split_whitespace();
            let key = parts.next().unwrap_or("");
            let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match key {
                "RssAnon:" => s.rss_anon = kib * 1024,
                "RssFile:" => s.rss_file += kib * 1024,
                "RssShmem:" => s.rss_file += kib * 1024,
                "VmHWM:" => s.rss_peak = kib * 1024,
                _ => {}
            }
        }
    }
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_ok() {
        s.allocated = stats::allocated::read().unwrap_or(0) as u64;
        s.active = stats::active::read().unwrap_or(0) as u64;
        s.resident = stats::resident::read().unwrap_or(0) as u64;
        s.mapped = stats::mapped::read().unwrap_or(0) as u64;
        s.retained = stats::retained::read().unwrap_or(0) as u64;
    }
    s
}
