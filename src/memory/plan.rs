//! How a memory ceiling is split into the budgets of the pipeline's buffers.
//!
//! ```text
//! ceiling = baseline RSS (binary, runtime, measured at start)
//!         + RESERVE_BYTES (Parquet encoders, thread stacks, stats, allocator slack)
//!         + chunk in flight (largest needed chunk: mapped pages + decompressed copy)
//!         + the rest, shared by: samples in flight 15 %, aligner windows 35 %,
//!           frames in flight 10 %, writer row group 2 x 12.5 % (builders + encoded pages),
//!           and 15 % left for allocator fragmentation and pages not yet returned
//! ```

use super::budget::Budget;
use super::format_bytes;
use crate::error::{Error, Result};

/// Fixed allowance for everything not held in a budgeted buffer, in bytes (12 MiB): code pages
/// touched after start (~4 MiB of Parquet, image and decoder code), allocator slack (freed pages
/// are returned within 0.5 s; per-thread caches), Parquet encoders, thread stacks, stats.
pub const RESERVE_BYTES: u64 = 12 << 20;
/// Smallest share left for the buffers after the chunk in flight, in bytes (2 MiB).
pub const MIN_BUFFER_BYTES: u64 = 2 << 20;
/// Shares of the buffers, in thousandths of what is left after the fixed part and the chunk.
pub const SAMPLES_PER_MILLE: u64 = 150;
pub const WINDOW_PER_MILLE: u64 = 350;
pub const FRAMES_PER_MILLE: u64 = 100;
/// The row group is held twice while it is encoded (builders + pages): 2 × 125.
pub const ROW_GROUP_PER_MILLE: u64 = 125;
/// Default ceiling when none is given (64 MiB).
pub const DEFAULT_CEILING: u64 = 64 << 20;

/// The budgets of one conversion run.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    pub ceiling: u64,
    pub baseline: u64,
    /// The chunk being decompressed and walked.
    pub chunk: Budget,
    /// Samples between the chunk reader and the aligner.
    pub samples: Budget,
    /// Samples held in the aligner's windows.
    pub window: Budget,
    /// Frames between the aligner and the writer (and the trim-end delay line).
    pub frames: Budget,
    /// Parquet row group flush threshold.
    pub row_group_bytes: usize,
}

impl MemoryPlan {
    /// Splits `ceiling` given the RSS already used (`baseline`) and the largest chunk the run
    /// must hold (`max_chunk`, named by `chunk_label` in errors).
    pub fn new(
        ceiling: u64,
        baseline: u64,
        max_chunk: u64,
        chunk_label: &str,
    ) -> Result<MemoryPlan> {
        let fixed = baseline + RESERVE_BYTES;
        let needed_min = fixed + max_chunk + MIN_BUFFER_BYTES;
        if ceiling < needed_min {
            return Err(Error::OverBudget {
                item: format!(
                    "{chunk_label} plus the process baseline ({}) and reserve ({}) and the smallest buffers ({})",
                    format_bytes(baseline),
                    format_bytes(RESERVE_BYTES),
                    format_bytes(MIN_BUFFER_BYTES)
                ),
                needed: needed_min,
                available: ceiling,
                ceiling,
                hint: format_bytes(needed_min.next_multiple_of(1 << 20)),
            });
        }
        let rest = ceiling - fixed - max_chunk;
        let share = |per_mille: u64| rest / 1000 * per_mille;
        Ok(MemoryPlan {
            ceiling,
            baseline,
            chunk: Budget::new("chunk in flight", max_chunk, ceiling),
            samples: Budget::new("samples in flight", share(SAMPLES_PER_MILLE), ceiling),
            window: Budget::new("aligner windows", share(WINDOW_PER_MILLE), ceiling),
            frames: Budget::new("frames in flight", share(FRAMES_PER_MILLE), ceiling),
            row_group_bytes: share(ROW_GROUP_PER_MILLE) as usize,
        })
    }

    /// Wakes every waiter: a stage failed.
    pub fn cancel(&self) {
        for b in [&self.chunk, &self.samples, &self.window, &self.frames] {
            b.cancel();
        }
    }

    /// What each budget held, for the report.
    pub fn usage(&self) -> Vec<BudgetUsage> {
        [&self.chunk, &self.samples, &self.window, &self.frames]
            .iter()
            .map(|b| BudgetUsage {
                name: b.name(),
                peak: b.peak(),
                largest_item: b.largest(),
                capacity: b.capacity(),
            })
            .collect()
    }

    /// The smallest ceiling under which a run with these `usage` figures fits: the fixed part,
    /// the largest chunk, and the shares each buffer needs for what it held at its peak (the
    /// windows) or for its largest item (channels, which only need room for one).
    pub fn smallest_ceiling(baseline: u64, usage: &[BudgetUsage]) -> u64 {
        let get = |name: &str| usage.iter().find(|u| u.name == name);
        let chunk = get("chunk in flight").map_or(0, |u| u.largest_item);
        let need = |name: &str, per_mille: u64, of: fn(&BudgetUsage) -> u64| {
            get(name).map_or(0, |u| of(u).saturating_mul(1000).div_ceil(per_mille))
        };
        let rest = [
            MIN_BUFFER_BYTES,
            need("samples in flight", SAMPLES_PER_MILLE, |u| u.largest_item),
            need("aligner windows", WINDOW_PER_MILLE, |u| u.peak),
            need("frames in flight", FRAMES_PER_MILLE, |u| u.largest_item),
        ]
        .into_iter()
        .max()
        .unwrap_or(MIN_BUFFER_BYTES);
        (baseline + RESERVE_BYTES + chunk + rest).next_multiple_of(1 << 20)
    }
}

/// Peak and largest item of one budget.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetUsage {
    pub name: &'static str,
    pub peak: u64,
    pub largest_item: u64,
    pub capacity: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_refuses_too_small_ceilings() {
        let p = MemoryPlan::new(64 << 20, 6 << 20, 2 << 20, "chunk 0").unwrap();
        let total = p.chunk.capacity()
            + p.samples.capacity()
            + p.window.capacity()
            + p.frames.capacity()
            + 2 * p.row_group_bytes as u64;
        assert!(total + (6 << 20) + RESERVE_BYTES <= 64 << 20);
        let e = MemoryPlan::new(12 << 20, 6 << 20, 2 << 20, "chunk 7 at offset 4117")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chunk 7 at offset 4117") && e.contains("--max-memory"),
            "{e}"
        );
    }
}
