//! A whole conversion run: inputs (ordered, sharded) → the output's conversion log (skip what
//! is done, refuse a changed config) → config → memory plan → one episode per new bag →
//! dataset published once (created, or appended to by a staged copy swapped in), with the run
//! report (per bag status, frames, drops, skew, peak memory; memory peak, ceiling, increase).
//!
//! One run at a time per output (`OUT.lock`); a run killed at any point leaves the previous
//! dataset as it was, and the next run converts what is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::ConvertConfig;
use super::lock::OutputLock;
use super::manifest::{
    BagEntry, BagIdentity, CONVERTED, FAILED, MANIFEST_NAME, Manifest, TOOL_VERSION, config_hash,
    fingerprint,
};
use super::mapping::zero_config;
use super::pipeline::{EpisodeReport, Monitor, chunk_need, convert_bag, spawn_monitor};
use super::plan::BagPlan;
use super::select::{Order, Shard, order_bags};
use crate::dataset::video::VideoCodec;
use crate::dataset::video::encoders::EncoderPlan;
use crate::dataset::{DatasetSpec, DatasetWriter, FeatureKind, WriterOptions, recover_staging};
use crate::diag;
use crate::error::{Error, Result};
use crate::input::Recording;
use crate::memory::log::{MemoryLog, render_svg};
use crate::memory::plan::{DEFAULT_CEILING, MemoryPlan};
use crate::memory::{format_bytes, sample};

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
    /// (reported as `settling`) and taken by a later run; see [`DEFAULT_SETTLE`].
    pub settle: Duration,
    /// `ceiling` is the tool's default (no `--max-memory`): a video run chooses its own, large
    /// enough for one encoder per camera (see [`crate::dataset::video::encoders::default_ceiling`]),
    /// capped by `ceiling_cap`.
    pub default_ceiling: bool,
    /// What the environment allows a default ceiling (its limit minus the margin), if known.
    pub ceiling_cap: Option<u64>,
}

/// One bag's outcome.
#[derive(Debug, Serialize)]
pub struct BagOutcome {
    pub bag: String,
    /// `ok` (converted into a new dataset), `appended` (converted into an existing one),
    /// `recovered` (converted, but its index was unusable and a scan recovered what it could:
    /// see `recovered`), `skipped` (already in the dataset), `settling` (still being written
    /// or copied: left for the next run), `failed`, `not_started` (the run was interrupted).
    pub status: &'static str,
    pub episode_index: Option<usize>,
    pub task: Option<String>,
    pub wall_s: f64,
    /// Peak RSS of the process while this bag converted, in bytes.
    pub peak_rss: Option<u64>,
    #[serde(flatten)]
    pub report: Option<EpisodeReport>,
    pub error: Option<String>,
    /// Why the bag was left out or how it was read, when that is worth saying (`settling`:
    /// how recently it changed).
    pub detail: Option<String>,
    /// Set when the bag had no usable index and was read by a recovery scan (status
    /// `recovered`): what was lost.
    pub recovered: Option<RecoveredReport>,
}

/// What a recovery scan found and lost in a bag whose index could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveredReport {
    /// `not closed` (recording killed), `truncated`, `damaged index`.
    pub reason: String,
    pub messages_recovered: u64,
    pub chunks: usize,
    /// Bytes of the chunk section missing from the file (a truncated copy: the index says
    /// where the chunk section ended); `None` when the file does not say (killed recording).
    pub bytes_missing: Option<u64>,
    /// Records the scan saw but could not keep: cut or unreadable records and messages of
    /// connections without a record (at least; a skipped chunk counts once).
    pub records_lost: u64,
    /// What the scan skipped or cut, each naming a file offset.
    pub warnings: Vec<String>,
}

impl RecoveredReport {
    fn new(note: &crate::bag::RecoveryNote) -> Self {
        use crate::bag::RecoveryReason;
        let (reason, bytes_missing) = match &note.reason {
            RecoveryReason::NotClosed => ("not closed".to_string(), None),
            RecoveryReason::IndexPastEnd {
                index_pos,
                file_len,
            } => (
                "truncated".to_string(),
                Some(index_pos.saturating_sub(*file_len)),
            ),
            RecoveryReason::Damaged(_) => ("damaged index".to_string(), None),
        };
        RecoveredReport {
            reason,
            messages_recovered: note.messages,
            chunks: note.chunks,
            bytes_missing,
            records_lost: note.records_lost,
            warnings: note.warnings.clone(),
        }
    }
}

/// Memory figures of the run, in bytes.
#[derive(Debug, Serialize, Default)]
pub struct MemoryReport {
    pub ceiling: u64,
    /// Where the ceiling came from: `--max-memory`, `default`, or the environment's limit that
    /// capped the default (Slurm, cgroup).
    pub ceiling_source: String,
    /// The kernel's peak RSS passed the ceiling between two samples of the monitor (which stops
    /// a run when it sees it): the run finished, but its memory guarantee did not hold.
    pub ceiling_exceeded: bool,
    /// Peak RSS of the process (`VmHWM`, kernel-measured).
    pub peak_rss: u64,
    /// Peak summed RSS of the process and its children (the ffmpeg encoders), sampled every
    /// 10 ms and after each chunk: what the ceiling bounds.
    pub peak_tree_rss: u64,
    /// Peak summed RSS of the children alone.
    pub peak_children_rss: u64,
    /// Each kind of child's peak RSS (e.g. `ffmpeg encoder observation.images.cam_h`).
    pub children: Vec<ChildPeak>,
    /// Video: what one encoder is planned to take, how many ran at once, and whether the
    /// ceiling was chosen by the tool (no `--max-memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoMemory>,
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
    /// Parquet row group size (encoded; spilled to disk while written).
    pub row_group_bytes: usize,
    /// Raw rows the writer buffers before encoding (its pages being filled take as much again).
    pub writer_buffer_bytes: usize,
    pub chunks_logged: usize,
}

/// Peak RSS of one kind of child process.
#[derive(Debug, Serialize, Clone)]
pub struct ChildPeak {
    pub label: String,
    pub peak_rss: u64,
}

/// How a video run shared its ceiling with the encoders (see [`crate::dataset::video::encoders`]).
#[derive(Debug, Serialize, Clone, Default)]
pub struct VideoMemory {
    /// Planned RSS of one encoder (the largest camera's), reserved from the ceiling per slot.
    pub encoder_bytes: u64,
    /// Encoders run at once; the other cameras' frames wait on disk.
    pub encoders_parallel: usize,
    pub cameras: usize,
    /// The ceiling was not given: the tool chose it for video.
    pub default_ceiling: bool,
    /// What the converter itself was planned under (the ceiling less the encoders).
    pub converter_ceiling: u64,
    /// The converter's smallest working share.
    pub converter_min: u64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub output: String,
    /// What happened to the output: `created`, `replaced`, `appended`, `unchanged` (nothing
    /// new to publish), `none` (no dataset written).
    pub mode: &'static str,
    /// Episodes and frames converted by this run.
    pub episodes: usize,
    pub frames: u64,
    pub bags: Vec<BagOutcome>,
    /// Bags already in the dataset.
    pub skipped: usize,
    pub failed: usize,
    /// Files left out because they are still being written or copied (status `settling`).
    pub settling: usize,
    /// Bags converted from a recovery scan (status `recovered`).
    pub recovered: usize,
    /// An interruption stopped the run at an episode boundary.
    pub interrupted: bool,
    /// Episodes and frames of the dataset after the run.
    pub total_episodes: u64,
    pub total_frames: u64,
    pub shard: Option<String>,
    pub order: &'static str,
    pub wall_s: f64,
    pub bytes_read: u64,
    pub throughput_mb_s: f64,
    pub memory: MemoryReport,
    pub fps: u32,
    pub features: Vec<String>,
}

/// Default `--settle` (60 s): a file found in a directory or by a glob whose size or mtime
/// changed more recently than this is still being written or copied, and waits for the next
/// run.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);

/// The bags of a run's inputs, and the files left out because they are still changing.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Sorted by path, deduplicated.
    pub bags: Vec<PathBuf>,
    /// Found in a directory or by a glob, but changed within the settle time.
    pub unsettled: Vec<Unsettled>,
}

/// A file left out because it changed within the settle time.
#[derive(Debug, Clone)]
pub struct Unsettled {
    pub path: PathBuf,
    /// Seconds since its last change (size, data or metadata: the later of mtime and ctime, so
    /// a copy that sets the original mtime at its end still counts as fresh).
    pub changed_s_ago: f64,
}

/// Expands directories (their `*.bag` files, sorted) and keeps files; sorted by path.
/// Files named one by one are always taken; the others only once they have not changed for
/// `settle`.
pub fn collect_inputs(inputs: &[PathBuf], settle: Duration) -> Result<Inputs> {
    let mut out = Inputs::default();
    let keep = |f: PathBuf, out: &mut Inputs| match changed_ago(&f) {
        Some(age) if age < settle => out.unsettled.push(Unsettled {
            path: f,
            changed_s_ago: age.as_secs_f64(),
        }),
        _ => out.bags.push(f),
    };
    for p in inputs {
        if p.is_dir() && crate::ros2::is_ros2_path(p) {
            // A rosbag2 directory is one recording.
            out.bags.push(p.clone());
        } else if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    (f.is_file() && f.extension().is_some_and(|x| x == "bag"))
                        || crate::ros2::is_ros2_path(f)
                })
                .collect();
            if found.is_empty() {
                return Err(Error::Config(format!(
                    "{}: no .bag files (nor ROS 2 recordings) in this directory",
                    p.display()
                )));
            }
            found.sort();
            for f in found {
                keep(f, &mut out);
            }
        } else if p.is_file() {
            out.bags.push(p.clone());
        } else if let Some(found) = expand_glob(p)? {
            for f in found {
                keep(f, &mut out);
            }
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    out.bags.sort();
    out.bags.dedup();
    out.unsettled.sort_by(|a, b| a.path.cmp(&b.path));
    out.unsettled.dedup_by(|a, b| a.path == b.path);
    // A file named one by one and also found by a directory is taken.
    out.unsettled
        .retain(|u| out.bags.binary_search(&u.path).is_err());
    Ok(out)
}

/// Time since the file last changed: the later of its mtime and ctime (`None` when unknown or
/// in the future).
fn changed_ago(p: &Path) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let ns = |s: i64, n: i64| (s as i128) * 1_000_000_000 + n as i128;
    let last = ns(m.mtime(), m.mtime_nsec()).max(ns(m.ctime(), m.ctime_nsec()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    (now >= last).then(|| Duration::from_nanos((now - last) as u64))
}

/// [`collect_inputs`]' bags, leaving out the files still changing within `settle`.
pub fn collect_bags(inputs: &[PathBuf], settle: Duration) -> Result<Vec<PathBuf>> {
    let found = collect_inputs(inputs, settle)?;
    if found.bags.is_empty()
        && let Some(u) = found.unsettled.first()
    {
        return Err(Error::Config(format!(
            "every input is still being written or copied (e.g. {} changed {:.0} s ago, under \
             --settle {} s); run again later, or name the files one by one",
            u.path.display(),
            u.changed_s_ago,
            settle.as_secs()
        )));
    }
    Ok(found.bags)
}

/// Expands a quoted glob (`'/data/*/run-??.bag'`, as a cron line may pass it): `*` and `?` in
/// any path component, matched against directory entries. `None` when `p` has no wildcard;
/// an error when it matches no file.
fn expand_glob(p: &Path) -> Result<Option<Vec<PathBuf>>> {
    let text = p.to_string_lossy();
    if !text.contains(['*', '?']) {
        return Ok(None);
    }
    let mut current: Vec<PathBuf> = vec![if p.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    for comp in p.components() {
        let part = comp.as_os_str().to_string_lossy();
        if matches!(
            comp,
            std::path::Component::RootDir | std::path::Component::CurDir
        ) {
            continue;
        }
        let mut next = Vec::new();
        for base in &current {
            if part.contains(['*', '?']) {
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| wildcard_match(&part, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect();
                names.sort();
                next.extend(names);
            } else {
                next.push(base.join(comp.as_os_str()));
            }
        }
        current = next;
    }
    let files: Vec<PathBuf> = current.into_iter().filter(|f| f.is_file()).collect();
    if files.is_empty() {
        return Err(Error::Config(format!(
            "{}: the pattern matches no file",
            p.display()
        )));
    }
    Ok(Some(files))
}

/// `*` (any run of characters) and `?` (one character) matching of a whole name.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
        match Recording::open(b).and_then(|r| {
            // ROS 2 type names (`sensor_msgs/msg/CompressedImage`) map as the ROS1 ones.
            let mut i = r.index().clone();
            for c in &mut i.connections {
                c.msgtype = crate::msg::normalize_type_name(&c.msgtype);
            }
            zero_config(&i)
        }) {
            Ok(c) => return Ok(c),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Config("no input bags".into())))
}

/// The rounded rate of `timeline` in the first of `bags` that has two or more of its
/// messages: the fps a run over `bags` gives a dataset whose timeline runs at its own rate.
/// Shards and `--jobs` children take it from the whole list, so they write what one run would.
pub fn first_bag_rate(bags: &[PathBuf], timeline: &str) -> Option<u32> {
    for b in bags {
        let Ok(rec) = Recording::open(b) else {
            continue;
        };
        let conns = rec.index().connections_of(timeline);
        let Ok(times) = rec.topic_times(&conns) else {
            continue;
        };
        if let (Some(first), Some(last)) = (times.first(), times.last())
            && times.len() >= 2
            && last > first
        {
            let rate = (times.len() - 1) as f64 / ((last - first) as f64 / 1e9);
            return Some((rate.round() as u32).max(1));
        }
    }
    None
}

/// Prints the mapping zero-config chose (stderr), so a user sees what a run without --config
/// does and can save it.
fn announce_zero_config(cfg: &ConvertConfig, bags: &[PathBuf]) {
    crate::diag!(
        "no --config: using this mapping, chosen from {} (save it with --print-config):",
        bags.first()
            .map(|b| b.display().to_string())
            .unwrap_or_default()
    );
    for f in &cfg.features {
        crate::diag!(
            "  {:<32} <- {} {}",
            f.name,
            f.topic.as_deref().unwrap_or("?"),
            f.field.as_deref().unwrap_or("")
        );
    }
    crate::diag!("  timeline: {}", cfg.timeline.as_deref().unwrap_or("?"));
}

/// The writer buffer given to the writer: the plan's, rounded down to a power of two. The plan's
/// figure moves with the process's baseline RSS by a few KiB between runs; rounding keeps page
/// boundaries, and so the dataset's bytes, the same from run to run under one `--max-memory`
/// (and smaller is always within the budget).
pub fn stable_buffer_bytes(planned: usize) -> usize {
    1usize << (usize::BITS - 1 - planned.max(1).leading_zeros())
}

/// Everything a run decided before converting: config, log, which bags to convert.
struct Prepared {
    cfg: ConvertConfig,
    manifest: Manifest,
    /// The output holds a dataset with a log that this run continues.
    appending: bool,
    /// The output exists but is an empty directory (or `--overwrite`/`--force`): replace it.
    replace: bool,
    outcomes: Vec<BagOutcome>,
    todo: Vec<Job>,
    /// Log entries changed by this run (a publish is needed even without new episodes).
    recorded: usize,
    /// The first bag failure, typed (returned as is when no bag could be converted).
    first_error: Option<Error>,
    /// The dataset's fps when the timeline runs at its own rate and this run's first bag is
    /// not the input list's first (a shard): `RunOptions::dataset_fps`, or the rate of the
    /// whole list's first bag, so every shard writes the fps one run would.
    dataset_fps: Option<u32>,
}

/// A bag to convert.
struct Job {
    path: PathBuf,
    start_time_ns: Option<u64>,
    id: BagIdentity,
    /// Position in `Prepared::outcomes`.
    slot: usize,
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Absolute path (symlinks resolved when possible), for the log and for ordering.
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn entry(job_path: &Path, id: &BagIdentity, hash: &str, start: Option<u64>) -> BagEntry {
    BagEntry {
        path: job_path.display().to_string(),
        size: id.size,
        mtime_ns: id.mtime_ns,
        fingerprint: id.fingerprint.clone(),
        config_hash: hash.to_string(),
        tool_version: TOOL_VERSION.to_string(),
        status: FAILED.to_string(),
        start_time_ns: start,
        episode_index: None,
        frames: None,
        dropped: None,
        task: None,
        wall_s: 0.0,
        error: None,
    }
}

fn outcome(path: &Path, status: &'static str) -> BagOutcome {
    BagOutcome {
        bag: path.display().to_string(),
        status,
        episode_index: None,
        task: None,
        wall_s: 0.0,
        peak_rss: None,
        report: None,
        error: None,
        detail: None,
        recovered: None,
    }
}

/// Inputs → ordered, sharded bags; the output's log → config, skipped and to-convert bags.
fn prepare(opts: &RunOptions) -> Result<Prepared> {
    let found = collect_inputs(&opts.inputs, opts.settle)?;
    let listed = found.bags;
    let mut abs: Vec<PathBuf> = listed.iter().map(|b| absolute(b)).collect();
    abs.sort();
    abs.dedup();
    let ordered = order_bags(abs, opts.order);
    // Zero-config is resolved from the whole ordered list, not from this shard's part, so every
    // shard (and every --jobs child) of one input list chooses the same mapping.
    let all_paths: Vec<PathBuf> = ordered.iter().map(|b| b.0.clone()).collect();
    let total = ordered.len();
    let selected: Vec<(PathBuf, Option<u64>)> = ordered
        .into_iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|s| s.holds(*i, total)))
        .map(|(_, b)| b)
        .collect();

    let out = &opts.output;
    let fresh = opts.overwrite || opts.force;
    let exists = out.exists();
    let existing = if exists && !fresh && !is_empty_dir(out) {
        match Manifest::read(out)? {
            Some(m) => Some(m),
            None => {
                return Err(Error::Dataset {
                    path: out.clone(),
                    what: format!(
                        "already exists and has no conversion log (meta/{MANIFEST_NAME}), so \
                         it cannot be appended to; pass --overwrite to replace it"
                    ),
                });
            }
        }
    } else {
        None
    };
    let bag_paths: Vec<PathBuf> = selected.iter().map(|b| b.0.clone()).collect();
    let mut cfg = match (&opts.config, &existing) {
        (Some(c), _) => c.clone(),
        (None, Some(m)) => ConvertConfig::from_toml(&m.config, "the dataset's conversion log")?,
        // Nothing to convert (an empty shard): no config is needed.
        (None, None) if bag_paths.is_empty() => toml::from_str("features = []")
            .map_err(|e| Error::Config(format!("empty config: {e}")))?,
        (None, None) => {
            let cfg = resolve_config(&all_paths, None)?;
            if opts.progress {
                announce_zero_config(&cfg, &all_paths);
            }
            cfg
        }
    };
    if let Some(fps) = opts.fps {
        cfg.fps = Some(fps);
    }
    if !bag_paths.is_empty() {
        cfg.check()?;
    }
    let hash = config_hash(&cfg);
    if let Some(m) = &existing {
        if m.config_hash != hash {
            let diff = crate::convert::config::config_difference(
                &m.config,
                &cfg.to_toml(),
                "the dataset",
                "this run",
            )
            .unwrap_or_else(|| {
                format!(
                    "config hash {} in its log, {} now",
                    &m.config_hash[..12.min(m.config_hash.len())],
                    &hash[..12]
                )
            });
            return Err(Error::Config(format!(
                "{}: was converted with another configuration ({diff}); a dataset holds one \
                 conversion: run without --config to reuse the dataset's, pass --force to \
                 reconvert the inputs into a fresh dataset, or write to another output",
                out.display(),
            )));
        }
        if m.order != opts.order.name() {
            return Err(Error::Config(format!(
                "{}: its episodes are ordered by {}, not {}; pass --order {} (or --force)",
                out.display(),
                m.order,
                opts.order.name(),
                m.order
            )));
        }
    }
    let appending = existing.is_some();
    let mut manifest = existing.unwrap_or_else(|| Manifest::new(&cfg, opts.order.name()));
    manifest.config_hash = hash.clone();
    let mut outcomes = Vec::new();
    let mut todo = Vec::new();
    let mut recorded = 0;
    for (path, start) in selected {
        let id = match fingerprint(&path) {
            Ok(id) => id,
            Err(e) => {
                let mut o = outcome(&path, "failed");
                o.error = Some(e.to_string());
                outcomes.push(o);
                continue;
            }
        };
        let key = path.display().to_string();
        if let Some(done) = manifest.converted_with(&key, &id.fingerprint) {
            let mut o = outcome(&path, "skipped");
            o.episode_index = done.episode_index.map(|e| e as usize);
            o.task = done.task.clone();
            outcomes.push(o);
        } else if let Some(done) = manifest.converted_at(&key) {
            let what = format!(
                "{key}: changed since it was converted into episode {} (size {} → {}); pass \
                 --replace-changed to reconvert just this bag into its episode, or --force to \
                 reconvert everything",
                done.episode_index.unwrap_or_default(),
                done.size,
                id.size
            );
            let mut e = entry(&path, &id, &hash, start);
            e.error = Some(what.clone());
            manifest.record(e);
            recorded += 1;
            let mut o = outcome(&path, "failed");
            o.error = Some(what);
            outcomes.push(o);
        } else {
            todo.push(Job {
                path: path.clone(),
                start_time_ns: start,
                id,
                slot: outcomes.len(),
            });
            outcomes.push(outcome(&path, "not_started"));
        }
    }
    for u in found.unsettled {
        let mut o = outcome(&u.path, "settling");
        o.detail = Some(format!(
            "changed {:.0} s ago (--settle {} s): still being written or copied; left for the \
             next run (--settle 0 takes it now)",
            u.changed_s_ago,
            opts.settle.as_secs()
        ));
        outcomes.push(o);
    }
    let dataset_fps = match (opts.dataset_fps, &cfg.timeline) {
        (Some(fps), _) => Some(fps),
        (None, Some(topic)) if cfg.fps.is_none() && opts.shard.is_some() && !appending => {
            first_bag_rate(&all_paths, topic)
        }
        _ => None,
    };
    Ok(Prepared {
        cfg,
        manifest,
        appending,
        replace: fresh || (exists && is_empty_dir(out)),
        outcomes,
        todo,
        recorded,
        first_error: None,
        dataset_fps,
    })
}

/// The memory plan and its monitor thread; rebuilt after a bag whose failure cancelled the
/// budgets, so the next bag starts with fresh ones.
struct Budgets {
    mem: MemoryPlan,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    monitor: Arc<Monitor>,
    /// The converter's ceiling, baseline, largest chunk, its label, longest episode (bytes),
    /// leaf columns, whether cameras are encoded to video.
    args: (u64, u64, u64, String, u64, u64, bool),
    /// The whole tree's ceiling.
    tree_ceiling: u64,
    /// Video: the encoders' share of the ceiling.
    encoders: Option<EncoderPlan>,
}

impl Budgets {
    fn new(
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

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Fresh budgets and monitor if the last bag's failure cancelled them.
    fn renew_if_cancelled(&mut self) -> Result<()> {
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

impl Drop for Budgets {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Converts `opts.inputs` into one dataset: skips bags the output's log already holds, appends
/// the others as new episodes, records failures, and publishes once at the end (or at the
/// episode boundary where an interruption stopped it).
pub fn run(opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    crate::memory::release_freed_pages();
    let start = sample();
    let _lock = OutputLock::acquire(&opts.output)?;
    for note in recover_staging(&opts.output)? {
        if opts.progress {
            diag!("note: {note}");
        }
    }
    let mut prep = prepare(opts)?;
    let cfg = prep.cfg.clone();
    // Video: the cameras' encoders take their planned share of the ceiling first.
    let cameras = if cfg.wants_video() {
        video_cameras(&prep.todo, &cfg)
    } else {
        Vec::new()
    };
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
            start.rss()
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
        let mut need = (0u64, String::new());
        if let Ok(rec) = Recording::open(&job.path) {
            for c in &rec.index().chunks {
                let n = chunk_need(c);
                if n > need.0 {
                    need = (
                        n,
                        format!(
                            "chunk at offset {} of {} ({n} bytes in flight)",
                            c.pos,
                            job.path.display()
                        ),
                    );
                }
            }
        }
        let converter = chosen_ceiling.saturating_sub(one_encoder);
        if let Err(e) = MemoryPlan::new(converter, start.rss(), need.0, &need.1) {
            let mut en = entry(
                &job.path,
                &job.id,
                &prep.manifest.config_hash,
                job.start_time_ns,
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
            .filter_map(|j| std::fs::metadata(&j.path).ok())
            .map(|m| m.len())
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
                start.rss(),
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
                start.rss(),
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

    let end = sample();
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
            format_bytes((over + over / 8).next_multiple_of(1 << 20))
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

/// What [`convert_all`] did.
struct Converted {
    log: MemoryLog,
    spec: Option<DatasetSpec>,
    published: bool,
    interrupted: bool,
    /// Episodes and frames of the output dataset after the run.
    totals: (u64, u64),
    peak_rss: u64,
}

fn interrupted(opts: &RunOptions) -> bool {
    opts.interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::SeqCst))
}

fn convert_all(
    opts: &RunOptions,
    cfg: &ConvertConfig,
    prep: &mut Prepared,
    mut budgets: Option<&mut Budgets>,
) -> Result<Converted> {
    let mut log = MemoryLog::create(opts.memory_log.as_deref())?;
    let mut writer: Option<DatasetWriter> = None;
    let mut spec: Option<DatasetSpec> = None;
    let mut stopped = false;
    let mut run_peak = 0u64;
    let n = prep.todo.len();
    let todo = std::mem::take(&mut prep.todo);
    let hash = prep.manifest.config_hash.clone();
    for (i, job) in todo.iter().enumerate() {
        if interrupted(opts) {
            stopped = true;
            if opts.progress {
                diag!(
                    "interrupted: stopping before {} ({} of {n} bags not started)",
                    job.path.display(),
                    n - i
                );
            }
            break;
        }
        let Some(b) = budgets.as_deref_mut() else {
            break;
        };
        b.renew_if_cancelled()?;
        let (mem, monitor) = (&b.mem, b.monitor.clone());
        let b = &*b;
        if opts.progress {
            let p = monitor.progress.get_or_init(|| {
                let total = todo
                    .iter()
                    .filter_map(|j| std::fs::metadata(&j.path).ok())
                    .map(|m| m.len())
                    .sum();
                crate::progress::Progress::new(total, true)
            });
            p.set_label(&format!(
                "[{}/{n}] {}",
                i + 1,
                job.path
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ));
        }
        let t0 = Instant::now();
        let path = &job.path;
        let task = task_for(path, opts, cfg);
        if opts.progress {
            diag!("[{}/{n}] {}", i + 1, path.display());
        }
        run_peak = run_peak.max(monitor.peak_rss.swap(0, Ordering::Relaxed));
        let mut recovered = None;
        let result = (|| -> Result<(EpisodeReport, u64)> {
            let rec = Recording::open(path)?;
            if let Some(note) = rec.recovery() {
                crate::diag::warn(&format!("{}: {note}", path.display()));
                recovered = Some(match rec.ros1_note() {
                    Some(n) => RecoveredReport::new(n),
                    // A ROS 2 file without a usable summary, read by a scan.
                    None => RecoveredReport {
                        reason: "scanned".into(),
                        messages_recovered: rec.index().message_count(),
                        chunks: rec.index().chunks.len(),
                        bytes_missing: None,
                        records_lost: 0,
                        warnings: vec![note],
                    },
                });
            }
            let plan = BagPlan::new(&rec, cfg, spec.as_ref().map(|s| s.fps).or(prep.dataset_fps))?;
            if writer.is_none() {
                let wopts = WriterOptions {
                    row_group_bytes: mem.row_group_bytes,
                    buffer_bytes: stable_buffer_bytes(mem.writer_buffer_bytes),
                    overwrite: prep.replace,
                    video: crate::dataset::video::VideoOptions {
                        max_encoders: b.encoders.map_or(0, |e| e.slots),
                        ..cfg.video_config().options()
                    },
                    ..WriterOptions::default()
                };
                let w = if prep.appending {
                    DatasetWriter::append(&opts.output, wopts)?
                } else {
                    DatasetWriter::create(&opts.output, plan.spec.clone(), wopts)?
                };
                let mut w = w;
                w.set_video_budget(mem.video.clone());
                spec = Some(w.spec().clone());
                writer = Some(w);
            }
            if let Some(s) = &spec
                && *s != plan.spec
            {
                return Err(Error::Config(format!(
                    "{}: its features differ from the dataset's: {}",
                    path.display(),
                    s.first_difference(&plan.spec, "the dataset", "this bag")
                        .unwrap_or_else(|| "the same features, another layout".into())
                )));
            }
            let w = writer
                .as_mut()
                .ok_or_else(|| Error::Config("dataset writer missing".into()))?;
            let episode = w.episodes_done();
            w.begin_episode(&task, plan.expected_frames)?;
            match convert_bag(&rec, &plan, mem, w, &mut log, episode as usize, &monitor) {
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
                    // The spilled cameras are encoded here: the monitor may stop them too.
                    w.end_episode()
                        .map_err(|e| monitor.over_ceiling_error(mem.tree_ceiling).unwrap_or(e))?;
                    Ok((report, episode))
                }
                Err(e) => {
                    w.abort_episode();
                    Err(e)
                }
            }
        })();
        let wall_s = t0.elapsed().as_secs_f64();
        let bag_peak = monitor.peak_rss.load(Ordering::Relaxed);
        run_peak = run_peak.max(bag_peak);
        let mut en = entry(path, &job.id, &hash, job.start_time_ns);
        en.wall_s = (wall_s * 1000.0).round() / 1000.0;
        en.task = Some(task.clone());
        let o = &mut prep.outcomes[job.slot];
        o.wall_s = wall_s;
        o.task = Some(task);
        o.peak_rss = Some(bag_peak);
        match result {
            Ok((report, episode)) => {
                if opts.progress {
                    diag!(
                        "      episode {episode}: {} frames, {} dropped, {} trimmed, {:.2}s",
                        report.frames,
                        report.dropped,
                        report.trimmed,
                        wall_s
                    );
                }
                en.status = CONVERTED.to_string();
                en.episode_index = Some(episode);
                en.frames = Some(report.frames);
                en.dropped = Some(report.dropped);
                o.status = match (&recovered, prep.appending) {
                    (Some(_), _) => "recovered",
                    (None, true) => "appended",
                    (None, false) => "ok",
                };
                o.recovered = recovered;
                o.episode_index = Some(episode as usize);
                o.report = Some(report);
                prep.manifest.record(en);
                prep.recorded += 1;
            }
            Err(e) => {
                if opts.progress {
                    diag!("      failed: {e}");
                }
                o.status = "failed";
                o.error = Some(e.to_string());
                en.error = Some(e.to_string());
                if prep.first_error.is_none() {
                    prep.first_error = Some(e.duplicate());
                }
                prep.manifest.record(en);
                prep.recorded += 1;
                // A broken writer cannot go on; --fail-fast stops at any failure. Either way
                // nothing is published: the previous dataset stays as it was.
                if opts.fail_fast || matches!(e, Error::Dataset { .. }) {
                    drop(writer.take());
                    return Err(e);
                }
            }
        }
    }
    if let Some(b) = budgets {
        b.monitor.peak_rss.fetch_max(run_peak, Ordering::Relaxed);
    }
    // Failures alone still update an existing dataset's log (they are listed there).
    if writer.is_none() && prep.appending && prep.recorded > 0 {
        let w = DatasetWriter::append(&opts.output, WriterOptions::default())?;
        spec = Some(w.spec().clone());
        writer = Some(w);
    }
    let mut published = false;
    let mut totals = (0, 0);
    match writer {
        Some(mut w) if w.episodes_done() > 0 => {
            prep.manifest.tool_version = TOOL_VERSION.to_string();
            prep.manifest.sort();
            w.put_meta_file(MANIFEST_NAME, prep.manifest.to_json().into_bytes());
            let summary = w.finish()?;
            totals = (summary.total_episodes, summary.total_frames);
            published = true;
        }
        Some(w) => drop(w),
        None => {}
    }
    if !published
        && prep.appending
        && let Ok(info) = std::fs::read_to_string(opts.output.join("meta/info.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&info)
    {
        totals = (
            v["total_episodes"].as_u64().unwrap_or(0),
            v["total_frames"].as_u64().unwrap_or(0),
        );
    }
    let nothing = totals.0 == 0;
    if nothing && !stopped && prep.outcomes.iter().any(|o| o.status == "failed") {
        let errors: Vec<String> = prep
            .outcomes
            .iter()
            .filter_map(|o| o.error.clone())
            .collect();
        // One bag: its own error, typed (e.g. over the memory ceiling), not a summary.
        if errors.len() == 1
            && let Some(e) = prep.first_error.take()
        {
            return Err(e);
        }
        return Err(Error::Config(format!(
            "no bag could be converted:\n  {}",
            errors.join("\n  ")
        )));
    }
    Ok(Converted {
        log,
        spec,
        published,
        interrupted: stopped,
        totals,
        peak_rss: run_peak,
    })
}

/// Extra room the converter keeps in video mode beyond its smallest plan, for the encoders'
/// pipe and stderr threads and the spill files' buffers: 8 MiB.
pub const CONVERTER_VIDEO_EXTRA: u64 = 8 << 20;

/// The video cameras (codec, width, height) of the first bag that plans.
fn video_cameras(todo: &[Job], cfg: &ConvertConfig) -> Vec<(VideoCodec, u32, u32)> {
    let paths: Vec<PathBuf> = todo.iter().map(|j| j.path.clone()).collect();
    video_cameras_of(&paths, cfg)
}

/// The video cameras (codec, width, height) `cfg` makes of the first of `bags` that plans.
pub fn video_cameras_of(bags: &[PathBuf], cfg: &ConvertConfig) -> Vec<(VideoCodec, u32, u32)> {
    for path in bags {
        let Ok(rec) = Recording::open(path) else {
            continue;
        };
        if let Ok(plan) = BagPlan::new(&rec, cfg, None) {
            return plan
                .spec
                .features
                .iter()
                .filter_map(|f| match f.kind {
                    FeatureKind::Video {
                        codec,
                        width,
                        height,
                        ..
                    } => Some((codec, width, height)),
                    _ => None,
                })
                .collect();
        }
    }
    Vec::new()
}

/// The human summary printed on stderr.
pub fn render_summary(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let shard = r
        .shard
        .as_ref()
        .map(|s| format!(" (shard {s})"))
        .unwrap_or_default();
    let settling = r.bags.iter().filter(|b| b.status == "settling");
    if r.mode == "unchanged" && r.failed == 0 {
        let _ = writeln!(
            s,
            "dataset {}{shard}: nothing to do: all {} bags are already in it ({} episodes, {} frames)",
            r.output, r.skipped, r.total_episodes, r.total_frames
        );
        for b in settling {
            let _ = writeln!(
                s,
                "  {}: left out: {}",
                b.bag,
                b.detail.as_deref().unwrap_or("")
            );
        }
        return s;
    }
    let _ = writeln!(
        s,
        "dataset {}{shard} {}: {} new episodes, {} frames at {} fps; {} bags already in it, {} failed{}; now {} episodes, {} frames{}",
        r.output,
        r.mode,
        r.episodes,
        r.frames,
        r.fps,
        r.skipped,
        r.failed,
        if r.settling > 0 {
            format!(
                ", {} still being written (left for the next run)",
                r.settling
            )
        } else {
            String::new()
        },
        r.total_episodes,
        r.total_frames,
        if r.interrupted {
            " (interrupted: the rest is converted by the next run)"
        } else {
            ""
        }
    );
    for b in &r.bags {
        match (&b.report, &b.error) {
            (Some(rep), _) => {
                let _ = writeln!(
                    s,
                    "  {}: {} frames, {} dropped, {} trimmed, {:.2}s",
                    b.bag, rep.frames, rep.dropped, rep.trimmed, b.wall_s
                );
                if let Some(rc) = &b.recovered {
                    let _ = writeln!(
                        s,
                        "      RECOVERED ({}): {} messages kept, {} records lost{}",
                        rc.reason,
                        rc.messages_recovered,
                        rc.records_lost,
                        rc.bytes_missing
                            .map(|m| format!(", {} missing from the file", format_bytes(m)))
                            .unwrap_or_default()
                    );
                }
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
            (None, None) if b.status == "settling" => {
                let _ = writeln!(
                    s,
                    "  {}: left out: {}",
                    b.bag,
                    b.detail.as_deref().unwrap_or("")
                );
            }
            _ => {}
        }
    }
    let m = &r.memory;
    let _ = writeln!(
        s,
        "memory: peak RSS {} (anon {}, file {}), ceiling {} ({}), increase {} (largest per chunk {})",
        format_bytes(m.peak_rss),
        format_bytes(m.peak_rss_anon),
        format_bytes(m.peak_rss_file),
        format_bytes(m.ceiling),
        m.ceiling_source,
        signed_bytes(m.increase),
        signed_bytes(m.max_chunk_increase)
    );
    if !m.children.is_empty() || m.video.is_some() {
        let shares: Vec<String> = m
            .children
            .iter()
            .map(|c| format!("{} {}", c.label, format_bytes(c.peak_rss)))
            .collect();
        let _ = writeln!(
            s,
            "memory of the process tree: peak {} (children {}: {})",
            format_bytes(m.peak_tree_rss),
            format_bytes(m.peak_children_rss),
            if shares.is_empty() {
                "none".to_string()
            } else {
                shares.join(", ")
            }
        );
    }
    if let Some(v) = &m.video {
        let _ = writeln!(
            s,
            "video: ceiling {}{}, {} of {} camera encoders at once ({} planned each), converter {}",
            format_bytes(m.ceiling),
            if v.default_ceiling {
                " (chosen for video: no --max-memory was given)"
            } else {
                ""
            },
            v.encoders_parallel,
            v.cameras,
            format_bytes(v.encoder_bytes),
            format_bytes(v.converter_ceiling)
        );
    }
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
