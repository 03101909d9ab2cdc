//! The process tree's memory: this process plus the child processes it started (the ffmpeg
//! encoders, the stream-copy joins, ffprobe). A Slurm `--mem`, a cgroup or a Kubernetes limit
//! acts on the whole tree, so the ceiling does too.
//!
//! Every child is registered here by whoever spawns it ([`register`]), under a label naming
//! what it does; the guard unregisters it when the child has been waited for. The memory
//! monitor reads each registered child's `VmRSS` from `/proc/<pid>/status` ([`children`]), the
//! same figure an external sampler sums (page cache aside).

use std::sync::Mutex;

/// One registered child.
#[derive(Debug, Clone)]
struct Entry {
    pid: u32,
    label: String,
}

static CHILDREN: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    // Each update is a single push or retain: a poisoned lock is still consistent.
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps a child registered until dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    pid: u32,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        lock().retain(|e| e.pid != self.pid);
    }
}

/// Makes the child `cmd` starts die with the thread that starts it (`PR_SET_PDEATHSIG`,
/// SIGKILL). A converter killed with SIGKILL (by hand, by a job's timeout, by the OOM killer)
/// runs no cleanup; without this its ffmpeg encoders live on, re-parented, holding their
/// memory after the run that the ceiling was promised for has ended. The signal follows the
/// spawning *thread*: children are started by the run's thread, which waits for them before
/// it returns. A parent that died before the child set the signal is caught by comparing
/// the parent's pid.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook runs in the forked child before exec; it only calls `prctl`,
        // `getppid` and `_exit`, which are async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Registers child `pid` (labelled e.g. `encoder observation.images.cam_h`) for the monitor.
pub(crate) fn register(pid: u32, label: impl Into<String>) -> ChildGuard {
    lock().push(Entry {
        pid,
        label: label.into(),
    });
    ChildGuard { pid }
}

/// Resident set of process `pid` (`VmRSS`, bytes); 0 when it is gone or not readable.
fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Every registered child's label and resident set now.
pub(crate) fn children() -> Vec<(String, u64)> {
    let list: Vec<Entry> = lock().clone();
    list.into_iter()
        .map(|e| {
            let rss = rss_of(e.pid);
            (e.label, rss)
        })
        .collect()
}

/// The summed resident set of the registered children now.
fn children_rss() -> u64 {
    children().iter().map(|c| c.1).sum()
}

/// How often a [`TreePeak`] samples the tree: 20 ms, as the conversion's monitor and the
/// external sampler (`tree_rss.py`) do.
const TREE_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The peak of this process's resident set plus its registered children's, sampled every
/// [`TREE_SAMPLE_INTERVAL`] on a thread of its own, for commands without a conversion's
/// monitor (`merge`, whose ffmpeg stream copies are children too).
pub(crate) struct TreePeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    worker: Option<std::thread::JoinHandle<(u64, u64)>>,
}

/// What a [`TreePeak`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TreePeaks {
    /// Highest summed resident set of the process and its children, in bytes.
    pub(crate) tree: u64,
    /// Highest summed resident set of the children alone.
    pub(crate) children: u64,
}

fn self_rss() -> u64 {
    rss_of(std::process::id())
}

impl TreePeak {
    /// Starts sampling.
    pub(crate) fn start() -> TreePeak {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let worker = std::thread::Builder::new()
            .name("tree-peak".into())
            .spawn(move || {
                let (mut tree, mut kids) = (0u64, 0u64);
                loop {
                    let c = children_rss();
                    tree = tree.max(self_rss() + c);
                    kids = kids.max(c);
                    if flag.load(Ordering::Relaxed) {
                        return (tree, kids);
                    }
                    std::thread::sleep(TREE_SAMPLE_INTERVAL);
                }
            })
            .ok();
        TreePeak { stop, worker }
    }

    /// Stops sampling and returns the peaks (at least one sample is always taken; the
    /// process's own kernel peak `VmHWM` is the caller's to add, sampling can miss a spike).
    pub(crate) fn finish(mut self) -> TreePeaks {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (tree, children) = self
            .worker
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or_else(|| (self_rss(), children_rss()));
        TreePeaks { tree, children }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_child_is_sampled_until_its_guard_drops() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let guard = register(child.id(), "test sleep");
        // The child may still be exec'ing: wait until it has a resident set.
        let mut seen = 0;
        for _ in 0..200 {
            seen = children()
                .iter()
                .find(|c| c.0 == "test sleep")
                .map_or(0, |c| c.1);
            if seen > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(seen > 0, "the child's RSS was read");
        // A tree sampler started now sees the child and this process.
        let peak = TreePeak::start();
        std::thread::sleep(TREE_SAMPLE_INTERVAL * 3);
        let p = peak.finish();
        assert!(p.children >= seen / 2, "{p:?} vs child {seen}");
        assert!(p.tree > p.children, "{p:?}");
        drop(guard);
        assert!(!children().iter().any(|c| c.0 == "test sleep"));
        let _ = child.kill();
        let _ = child.wait();
    }
}
