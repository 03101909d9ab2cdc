//! A whole conversion run: inputs (ordered, sharded) → the output's conversion log (skip what
//! is done, refuse a changed config) → config → memory plan → one episode per new bag →
//! dataset published once (created, or appended to by a staged copy swapped in), with the run
//! report (per bag status, frames, drops, skew, peak memory; memory peak, ceiling, increase).
//!
//! One run at a time per output (`OUT.lock`); a run killed at any point leaves the previous
//! dataset as it was, and the next run converts what is missing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::ConvertConfig;
use super::lock::OutputLock;
use super::select::{Order, Shard};
use crate::dataset::recover_staging;
use crate::diag;
use crate::error::{Error, Result};
use crate::memory::log::render_svg;
use crate::memory::plan::{DEFAULT_CEILING, MemoryPlan};
use crate::memory::{format_bytes, snapshot};

mod budgets;
mod episodes;
mod inputs;
mod prepare;
mod report;

use budgets::*;
use episodes::*;
pub(crate) use inputs::*;
pub(crate) use prepare::*;
pub use report::*;

/// Options of a run (validated CLI input).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    /// Config; None = zero-config from the first bag.
    pub config: Option<ConvertConfig>,
    pub ceiling: u64,
    /// Where the ceiling came from, in a user's words (`--max-memory`, `default capped by
    /// Slurm SLURM_MEM_PER_NODE=100 ...`); empty means `--max-memory`.
    pub ceiling_source: String,
    pub fps: Option<u32>,
    pub task: Option<String>,
    pub overwrite: bool,
    pub memory_log: Option<PathBuf>,
    pub memory_chart: Option<PathBuf>,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Reconvert the inputs into a fresh dataset replacing the output, even when its config
    /// differs (same effect as `overwrite`).
    pub force: bool,
    /// Stop at the first failed bag without publishing anything.
    pub fail_fast: bool,
    /// Episode order.
    pub order: Order,
    /// Convert only this shard of the ordered inputs.
    pub shard: Option<Shard>,
    /// Set (by a signal handler) to stop at the next episode boundary and publish what is done.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// The dataset's fps when the timeline runs at its own rate and the first bag is not this
    /// run's (a `--jobs` share): every share then writes the same fps.
    pub dataset_fps: Option<u32>,
    /// Files found in directories or by globs that changed within this time are left out
    /// (reported as `settling`) and taken by a later run (`--settle`, 60 s by default).
    pub settle: Duration,
    /// `ceiling` is the tool's default (no `--max-memory`): a video run chooses its own, large
    /// enough for one encoder per camera (see [`crate::dataset::video::encoders::default_ceiling`]),
    /// capped by `ceiling_cap`.
    pub default_ceiling: bool,
    /// What the environment allows a default ceiling (its limit minus the margin), if known.
    pub ceiling_cap: Option<u64>,
}

/// Converts `opts.inputs` into one dataset: skips bags the output's log already holds, appends
/// the others as new episodes, records failures, and publishes once at the end (or at the
/// episode boundary where an interruption stopped it).
pub fn run(opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    crate::memory::release_freed_pages();
    let start = snapshot();
    let _lock = OutputLock::acquire(&opts.output)?;
    for note in recover_staging(&opts.output)? {
        if opts.progress {
            diag!("note: {note}");
        }
    }
    let mut prep = prepare(opts)?;
    let cfg = prep.cfg.clone();
    // What the plan's budgets are carved beside: the RSS at start, and the scanned bags' indexes
    // kept since they were measured (each unindexed bag of a list is scanned once).
    let plan_baseline = start.rss() + prep.opened.kept_bytes();
    // Video: the cameras' encoders take their planned share of the ceiling first.
    let cameras = std::mem::take(&mut prep.cameras);
    let one_encoder = cameras
        .iter()
        .map(|&(c, w, h)| crate::dataset::video::encoders::encoder_bytes(c, w, h))
        .max()
        .unwrap_or(0);
    if !cameras.is_empty() && !opts.default_ceiling {
        // Not even one encoder besides the converter's smallest possible share: fail now.
        crate::dataset::video::encoders::plan(
            opts.ceiling,
            &cameras,
            plan_baseline
                + crate::memory::plan::RESERVE_BYTES
                + crate::memory::plan::MIN_BUFFER_BYTES,
        )?;
    }
    let video_default = opts.default_ceiling && !cameras.is_empty();
    // The environment's limit caps whatever default video chooses.
    let capped = |c: u64| opts.ceiling_cap.map_or(c, |cap| c.min(cap));
    let chosen_ceiling = if video_default {
        // Enough for every camera's encoder at once; the chunk check below uses the
        // converter's share of it.
        capped(crate::dataset::video::encoders::default_ceiling(
            &cameras,
            DEFAULT_CEILING,
        ))
    } else {
        opts.ceiling
    };

    // Pre-pass over the indexes: a bag whose largest chunk can never fit under the ceiling
    // fails alone; the largest remaining chunk sizes the chunk-in-flight budget.
    let mut max_chunk = (0u64, String::new());
    let mut runnable = Vec::new();
    for job in std::mem::take(&mut prep.todo) {
        // Measured once with the bag (`BagSource::measure`), not by opening it again.
        let need = job.source.largest_chunk.clone();
        let converter = chosen_ceiling.saturating_sub(one_encoder);
        if let Err(e) = MemoryPlan::new(converter, plan_baseline, need.0, &need.1) {
            let mut en = entry(
                &job.source.path,
                &job.id,
                &prep.manifest.config_hash,
                job.source.start_time_ns,
            );
            en.error = Some(e.to_string());
            prep.manifest.record(en);
            prep.recorded += 1;
            let o = &mut prep.outcomes[job.slot];
            o.status = "failed";
            o.error = Some(e.to_string());
            if opts.fail_fast {
                return Err(e);
            }
            prep.first_error.get_or_insert(e);
            continue;
        }
        if need.0 > max_chunk.0 {
            max_chunk = need;
        }
        runnable.push(job);
    }
    prep.todo = runnable;

    let mut budgets = if prep.todo.is_empty() {
        None
    } else {
        // An episode's data file is at most about as big as its bag; 2 leaf columns per
        // feature (images have bytes + path) and the 5 default columns.
        let longest_bag = prep
            .todo
            .iter()
            .map(|j| j.source.bytes())
            .max()
            .unwrap_or(0);
        let leaf_columns = 5 + 2 * cfg.features.len() as u64;
        let encoders = if cameras.is_empty() {
            None
        } else {
            // The converter's smallest working share: its plan, with room in the video budget
            // for a decode thread's scratch and two frames in flight.
            let frame = cameras
                .iter()
                .map(|&(_, w, h)| u64::from(w) * u64::from(h) * 3)
                .max()
                .unwrap_or(0);
            let converter_min = MemoryPlan::smallest_planning(
                plan_baseline,
                max_chunk.0,
                longest_bag,
                leaf_columns,
                4 * frame,
                chosen_ceiling.max(1 << 30),
            )
            .unwrap_or(chosen_ceiling)
                + CONVERTER_VIDEO_EXTRA;
            let ceiling = if video_default {
                capped(crate::dataset::video::encoders::default_ceiling(
                    &cameras,
                    converter_min,
                ))
            } else {
                chosen_ceiling
            };
            Some(crate::dataset::video::encoders::plan(
                ceiling,
                &cameras,
                converter_min,
            )?)
        };
        // The plan gives the converter what the encoders leave of the whole ceiling.
        let (converter, tree) = match &encoders {
            Some(e) => (
                e.converter_ceiling,
                e.converter_ceiling + e.slots as u64 * e.encoder_bytes,
            ),
            None => (opts.ceiling, opts.ceiling),
        };
        Some(Budgets::new(
            (
                converter,
                plan_baseline,
                max_chunk.0,
                max_chunk.1.clone(),
                longest_bag,
                leaf_columns,
                cfg.wants_video(),
            ),
            tree,
            encoders,
        )?)
    };
    let ceiling = budgets.as_ref().map_or(opts.ceiling, |b| b.tree_ceiling);
    let converted = convert_all(opts, &cfg, &mut prep, budgets.as_mut())?;
    let mut log = converted.log;
    let (usage, (row_group_bytes, writer_buffer_bytes), baseline, peaks, footer_metadata) =
        match &mut budgets {
            Some(b) => {
                b.stop();
                if let Some(p) = b.monitor.progress.get() {
                    p.finish();
                }
                let m = &b.monitor;
                (
                    b.mem.usage(),
                    (b.mem.row_group_bytes, b.mem.writer_buffer_bytes),
                    b.mem.baseline,
                    [
                        converted.peak_rss.max(m.peak_rss.load(Ordering::Relaxed)),
                        m.peak_anon.load(Ordering::Relaxed),
                        m.peak_file.load(Ordering::Relaxed),
                        m.peak_allocated.load(Ordering::Relaxed),
                        m.peak_tree.load(Ordering::Relaxed),
                        m.peak_children.load(Ordering::Relaxed),
                    ],
                    b.mem.footer_metadata,
                )
            }
            None => (Vec::new(), (0, 0), start.rss(), [0; 6], 0),
        };
    let children: Vec<ChildPeak> = budgets.as_ref().map_or(Vec::new(), |b| {
        b.monitor
            .child_peaks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(label, peak)| ChildPeak {
                label: label.clone(),
                peak_rss: *peak,
            })
            .collect()
    });
    let video_memory = budgets
        .as_ref()
        .and_then(|b| b.encoders)
        .map(|e| VideoMemory {
            encoder_bytes: e.encoder_bytes,
            encoders_parallel: e.slots,
            cameras: e.cameras,
            default_ceiling: opts.default_ceiling,
            converter_ceiling: e.converter_ceiling,
            converter_min: e.converter_min,
        });
    drop(budgets);

    let end = snapshot();
    let outcomes = prep.outcomes;
    let failed = outcomes.iter().filter(|o| o.status == "failed").count();
    let skipped = outcomes.iter().filter(|o| o.status == "skipped").count();
    let settling = outcomes.iter().filter(|o| o.status == "settling").count();
    let recovered = outcomes.iter().filter(|o| o.status == "recovered").count();
    let converted_reports = || outcomes.iter().filter_map(|o| o.report.as_ref());
    let frames: u64 = converted_reports().map(|r| r.frames).sum();
    let bytes_read: u64 = converted_reports().map(|r| r.bytes_read).sum();
    let episodes = converted_reports().count();
    let wall_s = started.elapsed().as_secs_f64();
    log.finish()?;
    // With video: one encoder besides the converter, which needs at least the share the
    // encoders were planned beside.
    let (one_encoder, converter_min) = video_memory
        .as_ref()
        .map_or((0, 0), |v| (v.encoder_bytes, v.converter_min));
    let memory = MemoryReport {
        ceiling,
        ceiling_source: if video_default {
            format!(
                "default for video: one encoder per camera besides the converter{}",
                opts.ceiling_cap
                    .filter(|cap| *cap <= ceiling)
                    .map(|cap| format!(
                        ", capped by the environment's limit ({})",
                        format_bytes(cap)
                    ))
                    .unwrap_or_default()
            )
        } else if opts.ceiling_source.is_empty() {
            "--max-memory".into()
        } else {
            opts.ceiling_source.clone()
        },
        peak_rss: end.rss_peak.max(peaks[0]),
        peak_tree_rss: peaks[4].max(end.rss_peak.max(peaks[0])),
        peak_children_rss: peaks[5],
        children,
        video: video_memory,
        peak_rss_anon: peaks[1],
        peak_rss_file: peaks[2],
        peak_allocated: peaks[3],
        start_rss: start.rss(),
        end_rss: end.rss(),
        start_allocated: start.allocated,
        end_allocated: end.allocated,
        increase: end.allocated as i64 - start.allocated as i64,
        max_chunk_increase: log.max_increase,
        max_chunk_increase_at: log.max_increase_chunk,
        smallest_ceiling: (MemoryPlan::smallest_ceiling(baseline, &usage, footer_metadata)
            + if one_encoder > 0 {
                CONVERTER_VIDEO_EXTRA
            } else {
                0
            })
        // Another process's baseline differs by up to a MiB or two.
        .max(converter_min + if one_encoder > 0 { 2 << 20 } else { 0 })
            + one_encoder,
        budgets: usage,
        baseline,
        row_group_bytes,
        writer_buffer_bytes,
        chunks_logged: log.rows,
        ceiling_exceeded: false,
    };
    let mut memory = memory;
    // Only converting runs are judged; a run that skipped everything measured nothing.
    let over = memory.peak_rss.max(memory.peak_tree_rss);
    if row_group_bytes > 0 && over > memory.ceiling {
        memory.ceiling_exceeded = true;
        crate::diag::warn(&format!(
            "peak RSS {} (with child processes) passed the ceiling of {} between two samples of \
             the memory monitor; rerun with a larger --max-memory (at least {})",
            format_bytes(over),
            format_bytes(memory.ceiling),
            format_bytes(crate::error::rerun_ceiling(
                over,
                memory.ceiling,
                memory.ceiling
            ))
        ));
    }
    if let Some(chart) = &opts.memory_chart {
        let kids: Vec<(String, u64)> = memory
            .children
            .iter()
            .map(|c| (c.label.clone(), c.peak_rss))
            .collect();
        let svg = render_svg(
            &log.chart,
            memory.ceiling,
            memory.peak_rss,
            memory.peak_tree_rss,
            &kids,
        );
        std::fs::write(chart, svg).map_err(|e| Error::io(chart, e))?;
    }
    let spec = match converted.spec {
        Some(s) => Some(s),
        None if opts.output.join("meta/info.json").is_file() => {
            crate::dataset::existing::read_spec(&opts.output)
                .ok()
                .map(|x| x.0)
        }
        None => None,
    };
    let mode = match (converted.published, prep.appending) {
        (true, true) => "appended",
        (true, false) if prep.replace => "replaced",
        (true, false) => "created",
        (false, _) if prep.appending => "unchanged",
        (false, _) => "none",
    };
    Ok(RunReport {
        output: opts.output.display().to_string(),
        mode,
        episodes,
        frames,
        skipped,
        settling,
        recovered,
        failed,
        interrupted: converted.interrupted,
        total_episodes: converted.totals.0,
        total_frames: converted.totals.1,
        shard: opts.shard.map(|s| s.to_string()),
        order: opts.order.name(),
        wall_s,
        bytes_read,
        throughput_mb_s: if wall_s > 0.0 {
            bytes_read as f64 / 1e6 / wall_s
        } else {
            0.0
        },
        memory,
        fps: spec.as_ref().map_or(0, |s| s.fps),
        features: spec
            .map(|s| s.features.into_iter().map(|f| f.name).collect())
            .unwrap_or_default(),
        bags: outcomes,
    })
}

#[cfg(test)]
mod glob_tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard_match("*.bag", "run-1.bag"));
        assert!(wildcard_match("run-??.bag", "run-12.bag"));
        assert!(!wildcard_match("run-??.bag", "run-1.bag"));
        assert!(!wildcard_match("*.bag", "run.bag.active"));
        assert!(wildcard_match("a*b*c", "aXXbYc"));
    }

    #[test]
    fn quoted_globs_expand_to_sorted_files() {
        let dir = std::env::temp_dir().join(format!("b2d-glob-{}", std::process::id()));
        for d in ["day1", "day2"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            for f in ["b.bag", "a.bag", "notes.txt"] {
                std::fs::write(dir.join(d).join(f), b"x").unwrap();
            }
        }
        let found = collect_bags(&[dir.join("day*/*.bag")], Duration::ZERO).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["day1/a.bag", "day1/b.bag", "day2/a.bag", "day2/b.bag"]
        );
        assert!(collect_bags(&[dir.join("nothing-*.bag")], Duration::ZERO).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
