//! How a memory ceiling is split into the budgets of the pipeline's buffers.
//!
//! ```text
//! ceiling = baseline RSS (binary, runtime, measured at start)
//!         + RESERVE_BYTES (Parquet encoders, thread stacks, stats, allocator slack)
//!         + chunk in flight (largest needed chunk: mapped pages + decompressed copy)
//!         + the rest, shared by: samples in flight 15 %, aligner windows 35 %,
//!           frames in flight 10 %, writer row group 2 x 12.5 % (builders + encoded pages),
//!           and 15 % left for allocator fragmentation and pages not yet returned
//!         (+ the footer metadata of the longest episode, reserved before the shares)
//!         with video features, VIDEO_PER_MILLE of the rest first goes to the frames in flight
//!         to the encoders (encoded + decoded RGB, decode scratch) and the shares above split
//!         what is left
//! ```
//!
//! The ffmpeg encoders are child processes: their memory is their own, not this process's.

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
/// Footer metadata parquet-rs keeps per column chunk until the file closes (measured: 10.4 KiB
/// per row group of 13 columns, so about 800 bytes).
pub const ROW_GROUP_META_BYTES_PER_COLUMN: u64 = 800;
/// Smallest row group the plan chooses (256 KiB).
pub const MIN_ROW_GROUP_BYTES: u64 = 256 << 10;
/// Share of the buffers given to video frames in flight (decoded RGB frames queued for the
/// ffmpeg encoders, their encoded bytes, the decode threads' scratch) when there are video
/// features, in thousandths: 300.
pub const VIDEO_PER_MILLE: u64 = 300;
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
    /// Frames in flight to the video encoders (capacity 0 without video features).
    pub video: Budget,
    /// Parquet row group flush threshold.
    pub row_group_bytes: usize,
    /// Reserved for the footer metadata of the longest episode's data file.
    pub footer_metadata: u64,
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
        Self::for_run(ceiling, baseline, max_chunk, chunk_label, 0, 0)
    }

    /// Like [`MemoryPlan::new`], also reserving the Parquet footer metadata of the longest
    /// episode: an episode is one data file, and the writer keeps about
    /// [`ROW_GROUP_META_BYTES_PER_COLUMN`] per column per row group until the file closes. The
    /// row-group size is chosen to balance the two (`sqrt(meta · episode / 1.25)`, capped by
    /// its share). When the model says it cannot fit, the plan falls back to not reserving it
    /// (with a warning) and the RSS monitor is the judge.
    pub fn for_run(
        ceiling: u64,
        baseline: u64,
        max_chunk: u64,
        chunk_label: &str,
        episode_bytes: u64,
        leaf_columns: u64,
    ) -> Result<MemoryPlan> {
        Self::for_run_video(
            ceiling,
            baseline,
            max_chunk,
            chunk_label,
            episode_bytes,
            leaf_columns,
            false,
        )
    }

    /// Like [`MemoryPlan::for_run`]; with `video`, [`VIDEO_PER_MILLE`] of the buffers' part
    /// goes to the video frames in flight and the other shares split the rest.
    pub fn for_run_video(
        ceiling: u64,
        baseline: u64,
        max_chunk: u64,
        chunk_label: &str,
        episode_bytes: u64,
        leaf_columns: u64,
        video: bool,
    ) -> Result<MemoryPlan> {
        let video_share = |rest: u64| {
            if video {
                rest / 1000 * VIDEO_PER_MILLE
            } else {
                0
            }
        };
        let fixed = baseline + RESERVE_BYTES;
        let needed_min = fixed + max_chunk + MIN_BUFFER_BYTES;
        let hint = |needed: u64| format_bytes(needed.next_multiple_of(1 << 20));
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
                hint: hint(needed_min),
            });
        }
        let meta_per_group = ROW_GROUP_META_BYTES_PER_COLUMN * leaf_columns;
        let meta = |rg: u64| meta_per_group.saturating_mul(episode_bytes) / rg.max(1);
        let optimum = ((meta_per_group as f64 * episode_bytes as f64 / 1.25).sqrt() as u64)
            .max(MIN_ROW_GROUP_BYTES);
        // Fixed point: the metadata reserve shrinks the shares, which bound the row group.
        let mut row_group = optimum;
        let mut rest = 0;
        for _ in 0..8 {
            let reserved = fixed + max_chunk + meta(row_group);
            if ceiling <= reserved + MIN_BUFFER_BYTES {
                rest = 0;
                break;
            }
            rest = ceiling - reserved;
            let cap = rest / 1000 * ROW_GROUP_PER_MILLE;
            row_group = if episode_bytes == 0 {
                cap
            } else {
                optimum.min(cap).max(MIN_ROW_GROUP_BYTES)
            };
        }
        if rest < MIN_BUFFER_BYTES {
            // The model (fixed reserve, every buffer full at once) says the episode's metadata
            // does not fit; it is conservative, so plan without reserving it and let the RSS
            // monitor stop the run if the ceiling is really reached.
            crate::diag::warn(&format!(
                "the footer metadata of a {} episode ({leaf_columns} columns, about {} at the smallest \
                 useful row groups) may not fit under --max-memory {}; the run stops if it does",
                format_bytes(episode_bytes),
                format_bytes(meta(optimum)),
                format_bytes(ceiling)
            ));
            let rest = ceiling - fixed - max_chunk;
            let video_bytes = video_share(rest);
            let rest = rest - video_bytes;
            let share = |per_mille: u64| rest / 1000 * per_mille;
            return Ok(MemoryPlan {
                ceiling,
                baseline,
                chunk: Budget::new("chunk in flight", max_chunk, ceiling),
                samples: Budget::new("samples in flight", share(SAMPLES_PER_MILLE), ceiling),
                window: Budget::new("aligner windows", share(WINDOW_PER_MILLE), ceiling),
                frames: Budget::new("frames in flight", share(FRAMES_PER_MILLE), ceiling),
                video: Budget::new(VIDEO_BUDGET, video_bytes, ceiling),
                row_group_bytes: share(ROW_GROUP_PER_MILLE) as usize,
                footer_metadata: 0,
            });
        }
        let video_bytes = video_share(rest);
        let rest = rest - video_bytes;
        let share = |per_mille: u64| rest / 1000 * per_mille;
        Ok(MemoryPlan {
            ceiling,
            baseline,
            chunk: Budget::new("chunk in flight", max_chunk, ceiling),
            samples: Budget::new("samples in flight", share(SAMPLES_PER_MILLE), ceiling),
            window: Budget::new("aligner windows", share(WINDOW_PER_MILLE), ceiling),
            frames: Budget::new("frames in flight", share(FRAMES_PER_MILLE), ceiling),
            video: Budget::new(VIDEO_BUDGET, video_bytes, ceiling),
            row_group_bytes: row_group as usize,
            footer_metadata: meta(row_group),
        })
    }

    /// Wakes every waiter: a stage failed.
    pub fn cancel(&self) {
        for b in [
            &self.chunk,
            &self.samples,
            &self.window,
            &self.frames,
            &self.video,
        ] {
            b.cancel();
        }
    }

    /// What each budget held, for the report.
    pub fn usage(&self) -> Vec<BudgetUsage> {
        [
            &self.chunk,
            &self.samples,
            &self.window,
            &self.frames,
            &self.video,
        ]
        .iter()
        .filter(|b| b.capacity() > 0 || b.name() != VIDEO_BUDGET)
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
    pub fn smallest_ceiling(baseline: u64, usage: &[BudgetUsage], footer_metadata: u64) -> u64 {
        let get = |name: &str| usage.iter().find(|u| u.name == name);
        let chunk = get("chunk in flight").map_or(0, |u| u.largest_item);
        let need = |name: &str, per_mille: u64, of: fn(&BudgetUsage) -> u64| {
            get(name).map_or(0, |u| of(u).saturating_mul(1000).div_ceil(per_mille))
        };
        let mut rest = [
            MIN_BUFFER_BYTES,
            need("samples in flight", SAMPLES_PER_MILLE, |u| u.largest_item),
            need("aligner windows", WINDOW_PER_MILLE, |u| u.peak),
            need("frames in flight", FRAMES_PER_MILLE, |u| u.largest_item),
        ]
        .into_iter()
        .max()
        .unwrap_or(MIN_BUFFER_BYTES);
        if get(VIDEO_BUDGET).is_some() {
            // The other shares get what video leaves; video needs one decode scratch and two
            // frames in flight (its largest item is a frame with its encoded bytes).
            rest = rest.saturating_mul(1000).div_ceil(1000 - VIDEO_PER_MILLE);
            rest = rest.max(need(VIDEO_BUDGET, VIDEO_PER_MILLE, |u| 3 * u.largest_item));
        }
        // The longest episode's footer metadata at balanced row groups (see `for_run`), and
        // the row group it balances with (the same size: the optimum equalises the two).
        let footer = footer_metadata.saturating_mul(2);
        (baseline + RESERVE_BYTES + chunk + rest + footer).next_multiple_of(1 << 20)
    }
}

/// Name of the video budget (in reports).
pub const VIDEO_BUDGET: &str = "video frames in flight";

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
    fn long_episodes_reserve_footer_metadata_or_are_refused_up_front() {
        let gb = 1u64 << 30;
        let p = MemoryPlan::for_run(64 << 20, 6 << 20, 1 << 20, "chunk 0", 4 * gb, 13).unwrap();
        assert!(
            p.footer_metadata > (4 << 20) && p.footer_metadata < (16 << 20),
            "{}",
            p.footer_metadata
        );
        assert!(p.row_group_bytes as u64 >= MIN_ROW_GROUP_BYTES);
        let small =
            MemoryPlan::for_run(64 << 20, 6 << 20, 1 << 20, "chunk 0", 1 << 20, 13).unwrap();
        assert!(small.footer_metadata < (64 << 10));
        let tight =
            MemoryPlan::for_run(24 << 20, 6 << 20, 1 << 20, "chunk 0", 64 * gb, 13).unwrap();
        assert_eq!(tight.footer_metadata, 0, "falls back to the plain plan");
    }

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
