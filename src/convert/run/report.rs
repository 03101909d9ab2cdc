//! What a run reports: per bag outcome (status, frames, drops, skew, memory), the memory
//! summary (peak, ceiling and where it came from, increase), and the text summary.

use serde::Serialize;

use crate::convert::pipeline::EpisodeReport;
use crate::memory::format_bytes;

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
    pub(crate) task: Option<String>,
    pub(crate) wall_s: f64,
    /// Peak RSS of the process while this bag converted, in bytes.
    pub(crate) peak_rss: Option<u64>,
    #[serde(flatten)]
    pub report: Option<EpisodeReport>,
    pub(crate) error: Option<String>,
    /// Why the bag was left out or how it was read, when that is worth saying (`settling`:
    /// how recently it changed).
    pub(crate) detail: Option<String>,
    /// Set when the bag had no usable index and was read by a recovery scan (status
    /// `recovered`): what was lost.
    pub(crate) recovered: Option<RecoveredReport>,
}

/// What a recovery scan found and lost in a bag whose index could not be used.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecoveredReport {
    /// `not closed` (recording killed), `truncated`, `damaged index`.
    pub(crate) reason: String,
    pub(crate) messages_recovered: u64,
    pub(crate) chunks: usize,
    /// Bytes of the chunk section missing from the file (a truncated copy: the index says
    /// where the chunk section ended); `None` when the file does not say (killed recording).
    pub(crate) bytes_missing: Option<u64>,
    /// Records the scan saw but could not keep: cut or unreadable records and messages of
    /// connections without a record (at least; a skipped chunk counts once).
    pub(crate) records_lost: u64,
    /// What the scan skipped or cut, each naming a file offset.
    pub(crate) warnings: Vec<String>,
}

/// Memory figures of the run, in bytes.
#[derive(Debug, Serialize, Default)]
pub struct MemoryReport {
    pub ceiling: u64,
    /// Where the ceiling came from: `--max-memory`, `default`, or the environment's limit that
    /// capped the default (Slurm, cgroup).
    pub(crate) ceiling_source: String,
    /// The kernel's peak RSS passed the ceiling between two samples of the monitor (which stops
    /// a run when it sees it): the run finished, but its memory guarantee did not hold.
    pub(crate) ceiling_exceeded: bool,
    /// Peak RSS of the process (`VmHWM`, kernel-measured).
    pub peak_rss: u64,
    /// Peak summed RSS of the process and its children (the ffmpeg encoders), sampled every
    /// 10 ms and after each chunk: what the ceiling bounds.
    pub(crate) peak_tree_rss: u64,
    /// Peak summed RSS of the children alone.
    pub(crate) peak_children_rss: u64,
    /// Each kind of child's peak RSS (e.g. `ffmpeg encoder observation.images.cam_h`).
    pub(crate) children: Vec<ChildPeak>,
    /// Video: what one encoder is planned to take, how many ran at once, and whether the
    /// ceiling was chosen by the tool (no `--max-memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) video: Option<VideoMemory>,
    /// Peaks sampled every 10 ms and after each chunk.
    pub peak_rss_anon: u64,
    pub(crate) peak_rss_file: u64,
    pub(crate) peak_allocated: u64,
    pub start_rss: u64,
    pub(crate) end_rss: u64,
    pub(crate) start_allocated: u64,
    pub(crate) end_allocated: u64,
    /// What the run retained beyond its start (jemalloc allocated, end − start).
    pub(crate) increase: i64,
    /// Largest jemalloc `allocated` change over one chunk, and where.
    pub(crate) max_chunk_increase: i64,
    pub(crate) max_chunk_increase_at: Option<(usize, usize)>,
    /// Per budget: peak bytes held, largest item, capacity.
    pub budgets: Vec<crate::memory::plan::BudgetUsage>,
    /// What the plan's budgets were carved beside: the process's RSS before the run (binary,
    /// runtime), plus the indexes of scanned bags kept from their measurement to their
    /// conversion.
    pub baseline: u64,
    /// The smallest `--max-memory` this run's figures would have fitted in.
    pub(crate) smallest_ceiling: u64,
    /// Parquet row group size (encoded; spilled to disk while written).
    pub(crate) row_group_bytes: usize,
    /// Raw rows the writer buffers before encoding (its pages being filled take as much again).
    pub(crate) writer_buffer_bytes: usize,
    pub(crate) chunks_logged: usize,
}

/// Peak RSS of one kind of child process.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct ChildPeak {
    pub(crate) label: String,
    pub(crate) peak_rss: u64,
}

/// How a video run shared its ceiling with the encoders (see [`crate::dataset::video::encoders`]).
#[derive(Debug, Serialize, Clone, Default)]
pub(crate) struct VideoMemory {
    /// Planned RSS of one encoder (the largest camera's), reserved from the ceiling per slot.
    pub(crate) encoder_bytes: u64,
    /// Encoders run at once; the other cameras' frames wait on disk.
    pub(crate) encoders_parallel: usize,
    pub(crate) cameras: usize,
    /// The ceiling was not given: the tool chose it for video.
    pub(crate) default_ceiling: bool,
    /// What the converter itself was planned under (the ceiling less the encoders).
    pub(crate) converter_ceiling: u64,
    /// The converter's smallest working share.
    pub(crate) converter_min: u64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub(crate) output: String,
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
    pub(crate) settling: usize,
    /// Bags converted from a recovery scan (status `recovered`).
    pub recovered: usize,
    /// An interruption stopped the run at an episode boundary.
    pub(crate) interrupted: bool,
    /// Episodes and frames of the dataset after the run.
    pub total_episodes: u64,
    pub total_frames: u64,
    pub shard: Option<String>,
    pub(crate) order: &'static str,
    pub(crate) wall_s: f64,
    pub(crate) bytes_read: u64,
    pub(crate) throughput_mb_s: f64,
    pub memory: MemoryReport,
    pub fps: u32,
    pub features: Vec<String>,
}

/// The human summary printed on stderr.
pub(crate) fn render_summary(r: &RunReport) -> String {
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

pub(super) fn signed_bytes(v: i64) -> String {
    if v < 0 {
        format!("-{}", format_bytes(v.unsigned_abs()))
    } else {
        format!("+{}", format_bytes(v as u64))
    }
}

impl RecoveredReport {
    pub(super) fn new(note: &crate::bag::RecoveryNote) -> Self {
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
