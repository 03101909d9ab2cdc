//! The run's budgets, carved from the memory plan once and renewed when a failed bag cancelled
//! them (so the next bag starts with whole budgets).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::convert::pipeline::{Monitor, spawn_monitor};
use crate::dataset::video::encoders::EncoderPlan;
use crate::error::Result;
use crate::memory::plan::MemoryPlan;

/// The memory plan and its monitor thread; rebuilt after a bag whose failure cancelled the
/// budgets, so the next bag starts with fresh ones.
pub(super) struct Budgets {
    pub(super) mem: MemoryPlan,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    pub(super) monitor: Arc<Monitor>,
    /// The converter's ceiling, baseline, largest chunk, its label, longest episode (bytes),
    /// leaf columns, whether cameras are encoded to video.
    pub(super) args: (u64, u64, u64, String, u64, u64, bool),
    /// The whole tree's ceiling.
    pub(super) tree_ceiling: u64,
    /// Video: the encoders' share of the ceiling.
    pub(super) encoders: Option<EncoderPlan>,
}

impl Drop for Budgets {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Budgets {
    pub(super) fn new(
        args: (u64, u64, u64, String, u64, u64, bool),
        tree_ceiling: u64,
        encoders: Option<EncoderPlan>,
    ) -> Result<Budgets> {
        let (ceiling, baseline, max_chunk, label, episode, columns, video) = args.clone();
        let mut mem = MemoryPlan::for_run_video(
            ceiling, baseline, max_chunk, &label, episode, columns, video,
        )?;
        mem.tree_ceiling = tree_ceiling;
        let monitor = Arc::new(Monitor::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_monitor(monitor.clone(), stop.clone(), mem.clone());
        Ok(Budgets {
            mem,
            stop,
            thread: Some(thread),
            monitor,
            args,
            tree_ceiling,
            encoders,
        })
    }

    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Fresh budgets and monitor if the last bag's failure cancelled them.
    pub(super) fn renew_if_cancelled(&mut self) -> Result<()> {
        if !self.mem.chunk.is_cancelled() && self.monitor.over_ceiling.load(Ordering::Relaxed) == 0
        {
            return Ok(());
        }
        self.stop();
        let (c, b, m, l, e, k, v) = self.args.clone();
        let mut mem = MemoryPlan::for_run_video(c, b, m, &l, e, k, v)?;
        mem.tree_ceiling = self.tree_ceiling;
        self.monitor.over_ceiling.store(0, Ordering::Relaxed);
        self.stop = Arc::new(AtomicBool::new(false));
        self.thread = Some(spawn_monitor(
            self.monitor.clone(),
            self.stop.clone(),
            mem.clone(),
        ));
        self.mem = mem;
        Ok(())
    }
}
