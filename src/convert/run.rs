//! A whole conversion run: inputs → config → memory plan → one episode per bag → dataset,
//! with the run report (per bag frames, drops, skew; memory peak, ceiling, increase).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::config::ConvertConfig;
use super::mapping::zero_config;
use super::pipeline::{EpisodeReport, Monitor, chunk_need, convert_bag, spawn_monitor};
use super::plan::BagPlan;
use crate::bag::{BagFile, BagIndex};
use crate::dataset::{DatasetSpec, DatasetWriter, WriterOptions};
use crate::error::{Error, Result};
use crate::memory::log::{MemoryLog, render_svg};
use crate::memory::plan::MemoryPlan;
use crate::memory::{format_bytes, sample};

/// Options of a run (validated CLI input).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    /// Config; None = zero-config from the first bag.
    pub config: Option<ConvertConfig>,
    pub ceiling: u64,
    pub fps: Option<u32>,
    pub task: Option<String>,
    pub overwrite: bool,
    pub memory_log: Option<PathBuf>,
    pub memory_chart: Option<PathBuf>,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// One bag's outcome.
#[derive(Debug, Serialize)]
pub struct BagOutcome {
    pub bag: String,
    pub status: &'static str,
    pub episode_index: Option<usize>,
    pub task: Option<String>,
    pub wall_s: f64,
    #[serde(flatten)]
    pub report: Option<EpisodeReport>,
    pub error: Option<String>,
}

/// Memory figures of the run, in bytes.
#[derive(Debug, Serialize, Default)]
pub struct MemoryReport {
    pub ceiling: u64,
    /// Peak RSS of the process (`VmHWM`, kernel-measured).
    pub peak_rss: u64,
    /// Peaks sampled every 10 ms and after each chunk.
    pub peak_rss_anon: u64,
    pub peak_rss_file: u64,
    pub peak_allocated: u64,
    pub start_rss: u64,
    pub end_rss: u64,
    pub start_allocated: u64,
    pub end_allocated: u64,
    /// What the run retained beyond its start (jemalloc allocated, end − start).
    pub increase: i64,
    /// Largest jemalloc `allocated` change over one chunk, and where.
    pub max_chunk_increase: i64,
    pub max_chunk_increase_at: Option<(usize, usize)>,
    /// Per budget: peak bytes held, largest item, capacity.
    pub budgets: Vec<crate::memory::plan::BudgetUsage>,
    /// The process's RSS before the run (binary, runtime).
    pub baseline: u64,
    /// The smallest `--max-memory` this run's figures would have fitted in.
    pub smallest_ceiling: u64,
    pub row_group_bytes: usize,
    pub chunks_logged: usize,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub output: String,
    pub episodes: usize,
    pub frames: u64,
    pub bags: Vec<BagOutcome>,
    pub failed: usize,
    pub wall_s: f64,
    pub bytes_read: u64,
    pub throughput_mb_s: f64,
    pub memory: MemoryReport,
    pub fps: u32,
    pub features: Vec<String>,
}

/// Expands directories (their `*.bag` files, sorted) and keeps files; sorted by path.
pub fn collect_bags(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "bag"))
                .collect();
            if found.is_empty() {
                return Err(Error::Config(format!(
                    "{}: no .bag files in this directory",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Task text of a bag: `--task`, else a `<bag>.task.txt` sidecar, else the config's.
fn task_for(bag: &Path, opts: &RunOptions, cfg: &ConvertConfig) -> String {
    if let Some(t) = &opts.task {
        return t.clone();
    }
    let sidecar = PathBuf::from(format!("{}.task.txt", bag.display()));
    if let Ok(t) = std::fs::read_to_string(&sidecar)
        && !t.trim().is_empty()
    {
        return t.trim().to_string();
    }
    cfg.task.clone()
}

/// The config a run uses: the given one, or zero-config from the first readable bag.
pub fn resolve_config(bags: &[PathBuf], given: Option<ConvertConfig>) -> Result<ConvertConfig> {
    if let Some(c) = given {
        return Ok(c);
    }
    let mut last_err = None;
    for b in bags {
        match BagFile::open(b)
            .and_then(|bag| BagIndex::open(&bag).map(|(i, _)| i))
            .and_then(|i| zero_config(&i))
        {
            Ok(c) => return Ok(c),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Config("no input bags".into())))
}

/// Converts `opts.inputs` into one dataset.
pub fn run(opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let start = sample();
    let bags = collect_bags(&opts.inputs)?;
    let mut cfg = resolve_config(&bags, opts.config.clone())?;
    if let Some(fps) = opts.fps {
        cfg.fps = Some(fps);
    }
    cfg.check()?;

    // Pre-pass over the indexes: the largest chunk decides the chunk-in-flight budget, and a
    // chunk that can never fit stops the run before any work.
    let mut max_chunk = (0u64, String::new());
    for b in &bags {
        if let Ok(bag) = BagFile::open(b)
            && let Ok((index, _)) = BagIndex::open(&bag)
        {
            for c in &index.chunks {
                let need = chunk_need(c);
                if need > max_chunk.0 {
                    max_chunk = (
                        need,
                        format!(
                            "chunk at offset {} of {} ({} bytes in flight)",
                            c.pos,
                            b.display(),
                            need
                        ),
                    );
                }
            }
        }
    }
    // An episode's data file is at most about as big as its bag; 2 leaf columns per feature
    // (images have bytes + path) and the 5 default columns.
    let longest_bag = bags
        .iter()
        .filter_map(|b| std::fs::metadata(b).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let leaf_columns = 5 + 2 * cfg.features.len() as u64;
    let mem = MemoryPlan::for_run_video(
        opts.ceiling,
        start.rss(),
        max_chunk.0,
        &max_chunk.1,
        longest_bag,
        leaf_columns,
        cfg.wants_video(),
    )?;
    let monitor = Arc::new(Monitor::default());
    let stop = Arc::new(AtomicBool::new(false));
    let monitor_thread = spawn_monitor(monitor.clone(), stop.clone(), mem.clone());
    let result = convert_all(opts, &cfg, &bags, &mem, &monitor);
    stop.store(true, Ordering::Relaxed);
    let _ = monitor_thread.join();
    let (outcomes, mut log, spec) = result?;

    let end = sample();
    monitor.observe(&end);
    let failed = outcomes.iter().filter(|o| o.status != "ok").count();
    let frames: u64 = outcomes
        .iter()
        .filter_map(|o| o.report.as_ref())
        .map(|r| r.frames)
        .sum();
    let bytes_read: u64 = outcomes
        .iter()
        .filter_map(|o| o.report.as_ref())
        .map(|r| r.bytes_read)
        .sum();
    let wall_s = started.elapsed().as_secs_f64();
    log.finish()?;
    let memory = MemoryReport {
        ceiling: opts.ceiling,
        peak_rss: end.rss_peak.max(monitor.peak_rss.load(Ordering::Relaxed)),
        peak_rss_anon: monitor.peak_anon.load(Ordering::Relaxed),
        peak_rss_file: monitor.peak_file.load(Ordering::Relaxed),
        peak_allocated: monitor.peak_allocated.load(Ordering::Relaxed),
        start_rss: start.rss(),
        end_rss: end.rss(),
        start_allocated: start.allocated,
        end_allocated: end.allocated,
        increase: end.allocated as i64 - start.allocated as i64,
        max_chunk_increase: log.max_increase,
        max_chunk_increase_at: log.max_increase_chunk,
        budgets: mem.usage(),
        baseline: mem.baseline,
        smallest_ceiling: MemoryPlan::smallest_ceiling(mem.baseline, &mem.usage()),
        row_group_bytes: mem.row_group_bytes,
        chunks_logged: log.rows,
    };
    if let Some(chart) = &opts.memory_chart {
        let svg = render_svg(&log.chart, opts.ceiling, memory.peak_rss);
        std::fs::write(chart, svg).map_err(|e| Error::io(chart, e))?;
    }
    Ok(RunReport {
        output: opts.output.display().to_string(),
        episodes: outcomes.iter().filter(|o| o.status == "ok").count(),
        frames,
        failed,
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

type Converted = (Vec<BagOutcome>, MemoryLog, Option<DatasetSpec>);

fn convert_all(
    opts: &RunOptions,
    cfg: &ConvertConfig,
    bags: &[PathBuf],
    mem: &MemoryPlan,
    monitor: &Monitor,
) -> Result<Converted> {
    let mut log = MemoryLog::create(opts.memory_log.as_deref())?;
    let mut writer: Option<DatasetWriter> = None;
    let mut spec: Option<DatasetSpec> = None;
    let mut outcomes = Vec::new();
    let mut episode = 0usize;
    for (i, path) in bags.iter().enumerate() {
        let t0 = Instant::now();
        let task = task_for(path, opts, cfg);
        if opts.progress {
            eprintln!("[{}/{}] {}", i + 1, bags.len(), path.display());
        }
        let result = (|| -> Result<EpisodeReport> {
            let bag = BagFile::open(path)?;
            let (index, note) = BagIndex::open(&bag)?;
            if let Some(note) = note {
                eprintln!("warning: {}: {note}", path.display());
            }
            let plan = BagPlan::new(&bag, &index, cfg, spec.as_ref().map(|s| s.fps))?;
            match &spec {
                None => {
                    let mut w = DatasetWriter::create(
                        &opts.output,
                        plan.spec.clone(),
                        WriterOptions {
                            row_group_bytes: mem.row_group_bytes,
                            overwrite: opts.overwrite,
                            video: cfg.video_config().options(),
                            ..WriterOptions::default()
                        },
                    )?;
                    w.set_video_budget(mem.video.clone());
                    writer = Some(w);
                    spec = Some(plan.spec.clone());
                }
                Some(s) if *s != plan.spec => {
                    return Err(Error::Config(format!(
                        "{}: its features differ from the dataset's (first bag): {}",
                        path.display(),
                        describe_difference(s, &plan.spec)
                    )));
                }
                Some(_) => {}
            }
            let w = writer
                .as_mut()
                .ok_or_else(|| Error::Config("dataset writer missing".into()))?;
            w.begin_episode(&task, plan.expected_frames)?;
            match convert_bag(&bag, &index, &plan, mem, w, &mut log, episode, monitor) {
                Ok(report) => {
                    if report.frames == 0 {
                        w.abort_episode();
                        return Err(Error::Config(format!(
                            "{}: no frame survived alignment ({} ticks, {} dropped, {} trimmed)",
                            path.display(),
                            report.ticks,
                            report.dropped,
                            report.trimmed
                        )));
                    }
                    w.end_episode()?;
                    Ok(report)
                }
                Err(e) => {
                    w.abort_episode();
                    Err(e)
                }
            }
        })();
        let wall_s = t0.elapsed().as_secs_f64();
        match result {
            Ok(report) => {
                if opts.progress {
                    eprintln!(
                        "      episode {episode}: {} frames, {} dropped, {} trimmed, {:.2}s",
                        report.frames, report.dropped, report.trimmed, wall_s
                    );
                }
                outcomes.push(BagOutcome {
                    bag: path.display().to_string(),
                    status: "ok",
                    episode_index: Some(episode),
                    task: Some(task),
                    wall_s,
                    report: Some(report),
                    error: None,
                });
                episode += 1;
            }
            Err(e) => {
                // A ceiling that cannot hold the data fails every bag alike: stop the run.
                let fatal = matches!(e, Error::OverBudget { .. } | Error::Dataset { .. });
                if opts.progress {
                    eprintln!("      failed: {e}");
                }
                outcomes.push(BagOutcome {
                    bag: path.display().to_string(),
                    status: "failed",
                    episode_index: None,
                    task: Some(task),
                    wall_s,
                    report: None,
                    error: Some(e.to_string()),
                });
                if fatal {
                    if let Some(w) = writer.take() {
                        drop(w);
                    }
                    return Err(e);
                }
            }
        }
    }
    match writer {
        Some(w) if episode > 0 => {
            w.finish()?;
        }
        Some(w) => {
            drop(w);
        }
        None => {}
    }
    if episode == 0 {
        let errors: Vec<String> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
        return Err(Error::Config(format!(
            "no bag could be converted:\n  {}",
            errors.join("\n  ")
        )));
    }
    Ok((outcomes, log, spec))
}

fn describe_difference(a: &DatasetSpec, b: &DatasetSpec) -> String {
    if a.fps != b.fps {
        return format!("fps {} vs {}", a.fps, b.fps);
    }
    for (x, y) in a.features.iter().zip(&b.features) {
        if x != y {
            return format!("feature {}: {:?} vs {:?}", x.name, x.kind, y.kind);
        }
    }
    "different feature lists".into()
}

/// The human summary printed on stderr.
pub fn render_summary(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dataset {}: {} episodes, {} frames at {} fps ({} failed bags)",
        r.output, r.episodes, r.frames, r.fps, r.failed
    );
    for b in &r.bags {
        match (&b.report, &b.error) {
            (Some(rep), _) => {
                let _ = writeln!(
                    s,
                    "  {}: {} frames, {} dropped, {} trimmed, {:.2}s",
                    b.bag, rep.frames, rep.dropped, rep.trimmed, b.wall_s
                );
                for sl in &rep.slots {
                    let _ = writeln!(
                        s,
                        "      {:<60} matched {:>6}  missed {:>5}  skew mean {:6.2} ms  max {:6.2} ms",
                        sl.label, sl.matched, sl.missed, sl.mean_skew_ms, sl.max_skew_ms
                    );
                }
            }
            (None, Some(e)) => {
                let _ = writeln!(s, "  {}: FAILED: {e}", b.bag);
            }
            _ => {}
        }
    }
    let m = &r.memory;
    let _ = writeln!(
        s,
        "memory: peak RSS {} (anon {}, file {}), ceiling {}, increase {} (largest per chunk {})",
        format_bytes(m.peak_rss),
        format_bytes(m.peak_rss_anon),
        format_bytes(m.peak_rss_file),
        format_bytes(m.ceiling),
        signed_bytes(m.increase),
        signed_bytes(m.max_chunk_increase)
    );
    let _ = writeln!(
        s,
        "read {} in {:.2}s ({:.0} MB/s)",
        format_bytes(r.bytes_read),
        r.wall_s,
        r.throughput_mb_s
    );
    s
}

fn signed_bytes(v: i64) -> String {
    if v < 0 {
        format!("-{}", format_bytes(v.unsigned_abs()))
    } else {
        format!("+{}", format_bytes(v as u64))
    }
}
