//! How a memory ceiling is split into the budgets of the pipeline's buffers.
//!
//! ```text
//! ceiling = baseline RSS (binary, runtime, measured at start)
//!         + RESERVE_BYTES (Parquet encoders, thread stacks, stats, allocator slack)
//!         + chunk in flight (largest needed chunk: its stored bytes + decompressed copy)
//!         + the rest, shared by: samples in flight 15 %, aligner windows 35 %,
//!           frames in flight 10 %, writer 2 x 12.5 % (raw rows + pages being filled;
//!           finished pages are spilled to disk until their row group is flushed),
//!           and 15 % left for allocator fragmentation and pages not yet returned
//!         (+ the footer metadata of the longest episode, reserved before the shares)
//!         with video features, VIDEO_PER_MILLE of the rest first goes to the frames in flight
//!         to the encoders (encoded + decoded RGB, decode scratch) and the shares above split
//!         what is left
//! ```
//!
//! The ffmpeg encoders are child processes: their share of the ceiling is planned before this
//! one (`dataset::video::encoders`), and the monitor holds the whole tree to [`MemoryPlan::tree_ceiling`].

use super::budget::Budget;
use super::format_bytes;
use crate::error::{Error, Result};

/// Default encoded size at which a Parquet row group is flushed: 8 MiB. Its pages wait on disk
/// (`spill`), so this is not a memory figure; it stays small because spilled pages that stay
/// dirty long enough get written to the disk for nothing (measured: a 4 GB bag converts in
/// 11.7 s with 8 MiB row groups, 14.9 s with 32 MiB and 35 s with 128 MiB).
pub(crate) const DEFAULT_ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Row groups per episode [`row_group_bytes_for`] aims at for long episodes: 256.
const ROW_GROUPS_PER_LONG_EPISODE: u64 = 256;
/// Largest row group [`row_group_bytes_for`] chooses: 32 MiB.
const LARGEST_CHOSEN_ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Row group size for a dataset whose longest episode holds about `episode_bytes`: the default,
/// or 1/256 of the episode when that is larger (at most 32 MiB). The writer keeps ~10 KiB of
/// footer metadata per row group until the episode's file closes; this holds that memory at
/// about 2.6 MiB for any episode up to 8 GiB (4 GB: 16 MiB row groups).
fn row_group_bytes_for(episode_bytes: u64) -> usize {
    let share =
        (episode_bytes / ROW_GROUPS_PER_LONG_EPISODE).min(LARGEST_CHOSEN_ROW_GROUP_BYTES as u64);
    DEFAULT_ROW_GROUP_BYTES.max(share as usize)
}

/// Fixed allowance for everything not held in a budgeted buffer, in bytes (12 MiB): code pages
/// touched after start (~4 MiB of Parquet, image and decoder code), allocator slack (freed pages
/// are returned within 0.5 s; per-thread caches), Parquet encoders, thread stacks, stats.
pub const RESERVE_BYTES: u64 = 12 << 20;
/// Smallest share left for the buffers after the chunk in flight, in bytes (2 MiB).
pub const MIN_BUFFER_BYTES: u64 = 2 << 20;
/// Shares of the buffers, in thousandths of what is left after the fixed part and the chunk.
const SAMPLES_PER_MILLE: u64 = 150;
const WINDOW_PER_MILLE: u64 = 350;
const FRAMES_PER_MILLE: u64 = 100;
/// The writer's raw rows, and as much again for the pages being filled: 2 × 125.
const WRITER_PER_MILLE: u64 = 125;
/// Footer metadata parquet-rs keeps per column chunk until the file closes (measured: 10.4 KiB
/// per row group of 13 columns, so about 800 bytes).
const ROW_GROUP_META_BYTES_PER_COLUMN: u64 = 800;
/// Share of the buffers given to video frames in flight (decoded RGB frames queued for the
/// ffmpeg encoders, their encoded bytes, the decode threads' scratch) when there are video
/// features, in thousandths: 300.
const VIDEO_PER_MILLE: u64 = 300;
/// Default ceiling when none is given (64 MiB).
pub const DEFAULT_CEILING: u64 = 64 << 20;

/// The budgets of one conversion run.
#[derive(Debug, Clone)]
pub(crate) struct MemoryPlan {
    /// What this plan's budgets were carved from (for video: the ceiling less the encoders).
    pub(crate) ceiling: u64,
    /// What the memory monitor holds the process tree (this process and its children) to:
    /// the run's whole ceiling.
    pub(crate) tree_ceiling: u64,
    pub(crate) baseline: u64,
    /// The chunk being decompressed and walked.
    pub(crate) chunk: Budget,
    /// Samples between the chunk reader and the aligner.
    pub(crate) samples: Budget,
    /// Samples held in the aligner's windows.
    pub(crate) window: Budget,
    /// Frames between the aligner and the writer (and the trim-end delay line).
    pub(crate) frames: Budget,
    /// Frames in flight to the video encoders (capacity 0 without video features).
    pub(crate) video: Budget,
    /// Raw rows the writer buffers before encoding them (its pages being filled take about as
    /// much again).
    pub(crate) writer_buffer_bytes: usize,
    /// Parquet row group size (encoded; spilled to disk while written, so not a memory share).
    pub(crate) row_group_bytes: usize,
    /// Reserved for the footer metadata of the longest episode's data file.
    pub(crate) footer_metadata: u64,
}

impl MemoryPlan {
    /// Splits `ceiling` given the RSS already used (`baseline`) and the largest chunk the run
    /// must hold (`max_chunk`, named by `chunk_label` in errors).
    pub(crate) fn new(
        ceiling: u64,
        baseline: u64,
        max_chunk: u64,
        chunk_label: &str,
    ) -> Result<MemoryPlan> {
        Self::for_run(ceiling, baseline, max_chunk, chunk_label, 0, 0)
    }

    /// Like [`MemoryPlan::new`], also reserving the Parquet footer metadata of the longest
    /// episode: an episode is one data file, and the writer keeps about
    /// [`ROW_GROUP_META_BYTES_PER_COLUMN`] per column per row group until the file closes; the
    /// row groups grow with the episode ([`row_group_bytes_for`]), so this
    /// stays small.
    fn for_run(
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
    pub(crate) fn for_run_video(
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
        if ceiling < needed_min {
            return Err(Error::over_budget(
                format!(
                    "{chunk_label} plus the process baseline ({}) and reserve ({}) and the smallest buffers ({})",
                    format_bytes(baseline),
                    format_bytes(RESERVE_BYTES),
                    format_bytes(MIN_BUFFER_BYTES)
                ),
                needed_min,
                ceiling,
                ceiling,
            ));
        }
        // Row groups wait on disk while they are written (`dataset::spill`), so their size is
        // chosen for the file, and only their footer metadata stays in memory.
        let row_group = row_group_bytes_for(episode_bytes);
        let groups = episode_bytes.div_ceil(row_group as u64).max(1);
        let footer = (ROW_GROUP_META_BYTES_PER_COLUMN * leaf_columns).saturating_mul(groups);
        let rest = ceiling.saturating_sub(fixed + max_chunk + footer);
        if rest < MIN_BUFFER_BYTES {
            let needed = fixed + max_chunk + footer + MIN_BUFFER_BYTES;
            return Err(Error::over_budget(
                format!(
                    "{chunk_label} plus the process baseline ({}), reserve ({}), the footer \
                     metadata of a {} episode ({}) and the smallest buffers ({})",
                    format_bytes(baseline),
                    format_bytes(RESERVE_BYTES),
                    format_bytes(episode_bytes),
                    format_bytes(footer),
                    format_bytes(MIN_BUFFER_BYTES)
                ),
                needed,
                ceiling,
                ceiling,
            ));
        }
        let video_bytes = video_share(rest);
        let rest = rest - video_bytes;
        let share = |per_mille: u64| rest / 1000 * per_mille;
        Ok(MemoryPlan {
            ceiling,
            tree_ceiling: ceiling,
            baseline,
            chunk: Budget::new("chunk in flight", max_chunk, ceiling),
            samples: Budget::new("samples in flight", share(SAMPLES_PER_MILLE), ceiling),
            window: Budget::new("aligner windows", share(WINDOW_PER_MILLE), ceiling),
            frames: Budget::new("frames in flight", share(FRAMES_PER_MILLE), ceiling),
            video: Budget::new(VIDEO_BUDGET, video_bytes, ceiling),
            writer_buffer_bytes: share(WRITER_PER_MILLE) as usize,
            row_group_bytes: row_group,
            footer_metadata: footer,
        })
    }

    /// Wakes every waiter: a stage failed.
    pub(crate) fn cancel(&self) {
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
    pub(crate) fn usage(&self) -> Vec<BudgetUsage> {
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
    pub(crate) fn smallest_ceiling(
        baseline: u64,
        usage: &[BudgetUsage],
        footer_metadata: u64,
    ) -> u64 {
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
        // The longest episode's footer metadata (see `for_run`).
        (baseline + RESERVE_BYTES + chunk + rest + footer_metadata).next_multiple_of(1 << 20)
    }
}

impl MemoryPlan {
    /// The smallest ceiling under which [`MemoryPlan::for_run_video`] plans (with `video`) and
    /// leaves the video frames in flight room for `video_frame_room` bytes; `None` if not even
    /// `upto` is enough.
    pub(crate) fn smallest_planning(
        baseline: u64,
        max_chunk: u64,
        episode_bytes: u64,
        leaf_columns: u64,
        video_frame_room: u64,
        upto: u64,
    ) -> Option<u64> {
        let ok = |c: u64| {
            Self::for_run_video(
                c,
                baseline,
                max_chunk,
                "",
                episode_bytes,
                leaf_columns,
                true,
            )
            .is_ok_and(|p| p.video.capacity() >= video_frame_room)
        };
        if !ok(upto) {
            return None;
        }
        let (mut lo, mut hi) = (1u64 << 20, upto);
        while hi - lo > (256 << 10) {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) { hi = mid } else { lo = mid }
        }
        Some(hi.next_multiple_of(1 << 20))
    }
}

/// Name of the video budget (in reports).
const VIDEO_BUDGET: &str = "video frames in flight";

/// Peak and largest item of one budget.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetUsage {
    pub name: &'static str,
    pub peak: u64,
    pub(crate) largest_item: u64,
    pub capacity: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_episodes_reserve_little_footer_metadata() {
        let gb = 1u64 << 30;
        let one = MemoryPlan::for_run(64 << 20, 6 << 20, 1 << 20, "chunk 0", gb, 13).unwrap();
        let four = MemoryPlan::for_run(64 << 20, 6 << 20, 1 << 20, "chunk 0", 4 * gb, 13).unwrap();
        for p in [&one, &four] {
            assert!(p.footer_metadata < (3 << 20), "{}", p.footer_metadata);
        }
        // The buffers do not shrink for the longer bag.
        assert!(four.writer_buffer_bytes * 100 >= one.writer_buffer_bytes * 95);
        // Beyond 8 GiB the row groups stop growing and the reserve grows, up to a clear error.
        let huge =
            MemoryPlan::for_run(256 << 20, 6 << 20, 1 << 20, "chunk 0", 64 * gb, 13).unwrap();
        assert!(huge.row_group_bytes > four.row_group_bytes);
        assert!(huge.footer_metadata > four.footer_metadata);
        let e = MemoryPlan::for_run(32 << 20, 6 << 20, 1 << 20, "chunk 0", 256 * gb, 13)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("footer metadata") && e.contains("--max-memory"),
            "{e}"
        );
        let small =
            MemoryPlan::for_run(64 << 20, 6 << 20, 1 << 20, "chunk 0", 1 << 20, 13).unwrap();
        assert!(small.footer_metadata < (64 << 10));
    }

    #[test]
    fn splits_and_refuses_too_small_ceilings() {
        let p = MemoryPlan::new(64 << 20, 6 << 20, 2 << 20, "chunk 0").unwrap();
        let total = p.chunk.capacity()
            + p.samples.capacity()
            + p.window.capacity()
            + p.frames.capacity()
            + 2 * p.writer_buffer_bytes as u64;
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
