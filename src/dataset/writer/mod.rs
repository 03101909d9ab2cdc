//! The streaming LeRobot v3.0 writer: frames → Arrow column buffers → Parquet row groups
//! flushed by size → data files rolled by size between episodes, with statistics kept on the
//! fly and the whole dataset published by one rename at the end.
//!
//! Layout on disk while writing: everything goes to `OUT.partial-<pid>-<n>` next to `OUT`;
//! [`DatasetWriter::finish`] fsyncs and renames it to `OUT`. Dropping an unfinished writer
//! removes the staging directory, and a killed process leaves only the `.partial-…` directory,
//! never something at `OUT`.

use std::collections::HashMap;
use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::file::properties::WriterProperties;

use super::meta::{self, EpisodeRow, EpisodesWriter, InfoTotals};
use super::spill::SpillStoreFactory;
use super::stats::{self, FeatureStats, ImageStats, SampledImage, StatsAggregate, VectorStats};
use super::video::{VideoSet, VideoSpan};
use super::{DatasetSpec, FeatureKind, FeatureValue, Frame, ImageFormat, MIB, WriterOptions};
use crate::error::{Error, Result};
use crate::memory::Budget;

mod adopt;
mod data_file;
mod rows;
mod sampling;
mod staging;
mod videos;

pub(crate) use adopt::Adopted;
use data_file::*;
use rows::*;
pub(crate) use sampling::{FrameSampler, Presampled};
pub(crate) use staging::recover_staging;
use staging::*;

/// What one finished episode produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSummary {
    pub episode_index: u64,
    pub frames: u64,
    task_index: u64,
    /// Global `index` of the first frame; the episode covers `from_index..to_index`.
    pub from_index: u64,
    pub to_index: u64,
    /// Data file holding the episode (relative to the dataset root).
    data_file: String,
    /// Per column (user features then the five defaults).
    pub stats: Vec<(String, FeatureStats)>,
}

/// Bytes held by a [`DatasetWriter`], by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Raw rows not yet handed to the Parquet encoder.
    buffered_rows: usize,
    /// The data file encoder's in-progress row group (`ArrowWriter::memory_size`).
    data_encoder: usize,
    /// The episodes parquet encoder's in-progress row group.
    episodes_encoder: usize,
    /// Statistics state of the open episode (sketches, histograms).
    stats: usize,
}

/// What a finished dataset holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    path: PathBuf,
    pub total_episodes: u64,
    pub total_frames: u64,
    pub total_tasks: u64,
    data_files: Vec<String>,
}

struct Episode {
    index: u64,
    task_index: u64,
    /// The task was first seen by this episode (forgotten again if it is aborted).
    task_is_new: bool,
    frames: u64,
    from_index: u64,
    acc: Vec<FeatureAcc>,
    /// Statistics of the user features given by the caller (an episode copied from another
    /// dataset), used instead of `acc`.
    given_stats: Option<Vec<FeatureStats>>,
    /// A write failed half-way; the episode can only be aborted.
    broken: bool,
    /// Copied from another dataset: its video features come as stream-copied segments
    /// ([`DatasetWriter::copy_video`]), their frame values are placeholders.
    copied: bool,
}

/// Streams frames into a LeRobot v3.0 dataset (see the module docs for the layout and
/// guarantees).
pub struct DatasetWriter {
    out: PathBuf,
    staging: PathBuf,
    spec: DatasetSpec,
    opts: WriterOptions,
    schema: SchemaRef,
    props: WriterProperties,
    /// Where the data file encoder's finished pages wait for their row group (the staging dir).
    spill: Arc<SpillStoreFactory>,
    columns: Vec<ColumnBuf>,
    defaults: DefaultBufs,
    buffered_rows: usize,
    buffered_bytes: usize,
    file: Option<DataFile>,
    /// (chunk, file) of the next data file to open.
    next_file: (usize, usize),
    data_files: Vec<String>,
    episode: Option<Episode>,
    episodes_done: u64,
    total_frames: u64,
    tasks: Vec<String>,
    task_ids: HashMap<String, u64>,
    episodes_meta: EpisodesWriter,
    aggregates: Vec<StatsAggregate>,
    /// An I/O error left the output in an unknown state; only dropping is allowed.
    failed: bool,
    published: bool,
    /// Appending: the published dataset at `out` is replaced by the staged one at `finish`.
    replaces: bool,
    /// Extra files written into `meta/` at `finish` (e.g. the conversion log).
    extra_meta: Vec<(String, Vec<u8>)>,
    /// Encoders of the video features (made at the first episode), and their budget.
    video: Option<VideoSet>,
    video_budget: Option<Budget>,
    /// Appending: each video feature's last file (feature, chunk, file, frames in it), which
    /// the next episodes continue, and every video file carried over.
    video_resume: Vec<(usize, usize, usize, u64)>,
    video_carried: Vec<(usize, String)>,
    /// The episode being begun is copied (no encoders are started for it).
    copying: bool,
    /// ffmpeg was checked for the video features (at creation, or deferred to the first
    /// episode by [`DatasetWriter::create_adopting`]).
    video_checked: bool,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

impl Drop for DatasetWriter {
    /// An unpublished dataset is removed so no half-written output is left behind.
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// `timestamp = frame_index / fps`, computed in f64 then stored as float32 (what lerobot does),
/// never accumulated.
fn timestamp(frame_index: u64, fps: u32) -> f32 {
    (frame_index as f64 / f64::from(fps)) as f32
}

/// The `path` of an image value: `frame-000012.jpg`.
fn image_path(frame_index: usize, format: ImageFormat) -> String {
    format!("frame-{frame_index:06}.{}", format.extension())
}

/// The exact statistics of the five default columns of an episode of `n` frames (episode
/// `episode`, task `task`, global rows `from..from + n`); `None` for an empty episode. One
/// function for encoded and adopted episodes, so a merge writes what a single run writes.
fn default_column_stats(
    fps: u32,
    n: u64,
    from: u64,
    episode: u64,
    task: u64,
) -> Option<Vec<(String, FeatureStats)>> {
    let defaults: [(&str, ColumnValue); 5] = [
        ("timestamp", Box::new(move |i| f64::from(timestamp(i, fps)))),
        ("frame_index", Box::new(|i| i as f64)),
        ("episode_index", Box::new(move |_| episode as f64)),
        ("index", Box::new(move |i| (from + i) as f64)),
        ("task_index", Box::new(move |_| task as f64)),
    ];
    defaults
        .into_iter()
        .map(|(name, f)| Some((name.to_string(), stats::monotone_column_stats(n, f)?)))
        .collect()
}

impl MemoryUsage {
    /// Sum of all parts.
    fn total(&self) -> usize {
        self.buffered_rows + self.data_encoder + self.episodes_encoder + self.stats
    }
}

impl DatasetWriter {
    /// Starts a dataset at `out` (which must not exist unless `opts.overwrite`), staging it in
    /// a sibling `.partial-…` directory.
    pub fn create(out: &Path, spec: DatasetSpec, opts: WriterOptions) -> Result<Self> {
        Self::refuse_existing(out, &opts)?;
        Self::start(out, spec, opts, false, true)
    }

    /// Like [`Self::create`], for a writer that may only [`Self::adopt`] datasets: the check
    /// that ffmpeg can encode the video features (a child process of 40-50 MiB) runs at the
    /// first episode that needs it, not now, so a merge that only links video files starts
    /// no ffmpeg at all.
    pub(crate) fn create_adopting(
        out: &Path,
        spec: DatasetSpec,
        opts: WriterOptions,
    ) -> Result<Self> {
        Self::refuse_existing(out, &opts)?;
        Self::start(out, spec, opts, false, false)
    }

    /// Refuses an existing output unless `overwrite` and it is replaceable.
    fn refuse_existing(out: &Path, opts: &WriterOptions) -> Result<()> {
        if out.exists() {
            let dataset_err = |what: &str| Error::Dataset {
                path: out.to_path_buf(),
                what: what.into(),
            };
            if !opts.overwrite {
                return Err(dataset_err("already exists (pass overwrite to replace it)"));
            }
            if !replaceable(out) {
                return Err(dataset_err(
                    "exists and is neither a dataset nor an empty directory; refusing to replace it",
                ));
            }
        }
        Ok(())
    }

    /// The dataset's spec (for an appending writer: the one read from `info.json`).
    pub(crate) fn spec(&self) -> &DatasetSpec {
        &self.spec
    }

    /// Episodes completed so far (including those of the dataset being appended to).
    pub(crate) fn episodes_done(&self) -> u64 {
        self.episodes_done
    }

    /// Adds a file `meta/<name>` written (and fsynced) by [`Self::finish`].
    pub(crate) fn put_meta_file(&mut self, name: &str, bytes: Vec<u8>) {
        self.extra_meta.retain(|(n, _)| n != name);
        self.extra_meta.push((name.to_string(), bytes));
    }

    /// The staging directory being written (renamed to the output by [`Self::finish`]).
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn err(&self, what: impl Into<String>) -> Error {
        Error::Dataset {
            path: self.out.clone(),
            what: what.into(),
        }
    }

    /// Whether a write failed in a way the writer could not undo (the data file could not be
    /// cut back to its completed episodes): nothing more may be written or published.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            Err(self.err("an earlier write failed; the dataset cannot be continued"))
        } else {
            Ok(())
        }
    }

    /// Starts the next episode. `expected_frames` is an upper bound on its length, used to pick
    /// lerobot's image-statistics sample (frames past it are never sampled).
    pub fn begin_episode(&mut self, task: &str, expected_frames: usize) -> Result<()> {
        self.check_usable()?;
        if let Some(ep) = &self.episode {
            return Err(self.err(format!(
                "episode {} is still open; end or abort it first",
                ep.index
            )));
        }
        let (task_index, task_is_new) = match self.task_ids.get(task) {
            Some(i) => (*i, false),
            None => {
                let i = self.tasks.len() as u64;
                self.tasks.push(task.to_string());
                self.task_ids.insert(task.to_string(), i);
                (i, true)
            }
        };
        let acc = self
            .spec
            .features
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Vector { len, .. } => FeatureAcc::Vector(VectorStats::new(*len)),
                FeatureKind::Image { .. } | FeatureKind::Video { .. } => {
                    FeatureAcc::Image(ImageStats::new(expected_frames))
                }
            })
            .collect();
        self.begin_video()?;
        self.episode = Some(Episode {
            index: self.episodes_done,
            task_index,
            task_is_new,
            frames: 0,
            from_index: self.total_frames,
            acc,
            given_stats: None,
            broken: false,
            copied: self.copying,
        });
        Ok(())
    }

    /// Starts an episode copied from another dataset: its frames are pushed as usual, but its
    /// feature statistics are `stats` (one per user feature, as stored with the original), so
    /// no image is decoded and the copy's stats equal the original's.
    pub(crate) fn begin_copied_episode(
        &mut self,
        task: &str,
        stats: Vec<FeatureStats>,
    ) -> Result<()> {
        if stats.len() != self.spec.features.len() {
            return Err(self.err(format!(
                "{} feature statistics given for {} features",
                stats.len(),
                self.spec.features.len()
            )));
        }
        self.copying = true;
        let r = self.begin_episode(task, 0);
        self.copying = false;
        r?;
        if let Some(ep) = &mut self.episode {
            ep.given_stats = Some(stats);
        }
        Ok(())
    }

    /// Appends one frame to the open episode. A frame that does not match the spec (or whose
    /// sampled image cannot be decoded) is rejected with nothing recorded; the episode goes on.
    pub fn push_frame(&mut self, frame: Frame) -> Result<()> {
        self.check_usable()?;
        let mut ep = self
            .episode
            .take()
            .ok_or_else(|| self.err("push_frame without begin_episode"))?;
        let r = self.push_into(&mut ep, frame);
        self.episode = Some(ep);
        r
    }

    /// Like [`Self::push_frame`], with the image-statistics sample already decoded by a
    /// [`FrameSampler`] (on another thread: decoding sampled JPEGs is the writer's costliest
    /// work).
    pub(crate) fn push_presampled(&mut self, frame: Frame, sampled: Presampled) -> Result<()> {
        self.check_usable()?;
        let mut ep = self
            .episode
            .take()
            .ok_or_else(|| self.err("push_frame without begin_episode"))?;
        let r = if sampled.frame_index != ep.frames as usize {
            Err(self.err(format!(
                "image sample was made for frame {} but the episode is at frame {}",
                sampled.frame_index, ep.frames
            )))
        } else {
            self.push_inner(&mut ep, frame, Some(sampled.images))
        };
        self.episode = Some(ep);
        r
    }

    fn push_into(&mut self, ep: &mut Episode, frame: Frame) -> Result<()> {
        self.push_inner(ep, frame, None)
    }

    fn push_inner(
        &mut self,
        ep: &mut Episode,
        frame: Frame,
        presampled: Option<Vec<Option<SampledImage>>>,
    ) -> Result<()> {
        if ep.broken {
            return Err(self.err(format!("episode {} hit a write error; abort it", ep.index)));
        }
        self.check_frame(ep, &frame)?;
        let frame_index = ep.frames as usize;
        // Image statistics decode the sampled frames; do all of them before recording anything.
        let mut pending = Vec::new();
        for ((f, v), acc) in self.spec.features.iter().zip(&frame.values).zip(&ep.acc) {
            if presampled.is_some() {
                break;
            }
            if let (
                FeatureAcc::Image(st),
                FeatureValue::Image { bytes, format },
                FeatureKind::Image { height, width, .. } | FeatureKind::Video { height, width, .. },
            ) = (acc, v, &f.kind)
            {
                let p = st
                    .sample(frame_index, bytes, *format, (*height, *width))
                    .map_err(|e| {
                        self.err(format!(
                            "episode {} frame {frame_index}: feature {}: {e}",
                            ep.index, f.name
                        ))
                    })?;
                pending.push(p);
            }
        }
        let mut pending = presampled.unwrap_or(pending).into_iter();
        for (acc, v) in ep.acc.iter_mut().zip(&frame.values) {
            match (acc, v) {
                (FeatureAcc::Vector(st), FeatureValue::Vector(x)) => st.push(x),
                (FeatureAcc::Image(st), FeatureValue::Image { .. }) => {
                    st.commit(frame_index, pending.next().flatten())
                }
                _ => {}
            }
        }
        // Columns.
        let global = self.total_frames + ep.frames;
        for (i, (col, v)) in self.columns.iter_mut().zip(frame.values).enumerate() {
            match (col, v) {
                (ColumnBuf::Video, _) if ep.copied => {}
                (ColumnBuf::Video, FeatureValue::Image { bytes, format }) => {
                    let pushed = match &mut self.video {
                        Some(video) => video.push(i, bytes, format),
                        None => Err(Error::Internal("video encoders missing".into())),
                    };
                    if let Err(e) = pushed {
                        ep.broken = true;
                        return Err(e);
                    }
                }
                (ColumnBuf::Vector { values, .. }, FeatureValue::Vector(x)) => {
                    self.buffered_bytes += x.len() * 4;
                    values.extend_from_slice(&x);
                }
                (ColumnBuf::Image { bytes, paths }, FeatureValue::Image { bytes: b, format }) => {
                    let name = image_path(frame_index, format);
                    self.buffered_bytes += b.len() + name.len() + 8;
                    bytes.append_value(&b);
                    paths.append_value(name);
                }
                _ => {}
            }
        }
        let d = &mut self.defaults;
        d.timestamp.push(timestamp(ep.frames, self.spec.fps));
        d.frame_index.push(ep.frames as i64);
        d.episode_index.push(ep.index as i64);
        d.index.push(global as i64);
        d.task_index.push(ep.task_index as i64);
        self.buffered_rows += 1;
        self.buffered_bytes += DEFAULT_ROW_BYTES;
        ep.frames += 1;

        let r = self.maybe_flush();
        if r.is_err() {
            ep.broken = true;
        }
        r
    }

    /// Hands buffered rows to the encoder once they reach `buffer_bytes`, and flushes the row
    /// group once its encoded size (mostly spilled pages) plus the buffered rows reach
    /// `row_group_bytes`.
    fn maybe_flush(&mut self) -> Result<()> {
        let in_progress = self
            .file
            .as_ref()
            .map_or(0, |f| f.writer.in_progress_size());
        if self.buffered_bytes + in_progress >= self.opts.row_group_bytes {
            self.encode_buffered()?;
            self.flush_row_group()?;
        } else if self.buffered_bytes >= self.opts.buffer_bytes {
            self.encode_buffered()?;
        }
        Ok(())
    }

    /// Ends the open episode: flushes its last row group, records its metadata and stats, and
    /// closes the data file if it has reached `data_file_bytes`. An empty episode is discarded
    /// and reported as an error.
    pub fn end_episode(&mut self) -> Result<EpisodeSummary> {
        self.check_usable()?;
        let Some(ep) = self.episode.as_ref() else {
            return Err(self.err("end_episode without begin_episode"));
        };
        if ep.broken || ep.frames == 0 {
            let what = if ep.broken {
                format!("episode {} hit a write error and was discarded", ep.index)
            } else {
                format!("episode {} has no frames and was discarded", ep.index)
            };
            self.abort_episode();
            return Err(self.err(what));
        }
        let videos = self.end_video()?;
        let r = self.end_episode_inner(&videos);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn end_episode_inner(&mut self, videos: &[(usize, VideoSpan)]) -> Result<EpisodeSummary> {
        self.encode_buffered()?;
        self.flush_row_group()?;
        let ep = self
            .episode
            .take()
            .ok_or_else(|| self.err("no open episode"))?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("episode has rows but no data file".into()))?;
        file.kept_row_groups = file.writer.flushed_row_groups().len();
        let (chunk, file_idx) = (file.chunk, file.file);

        let mut stats = Vec::with_capacity(self.aggregates.len());
        for (k, (f, acc)) in self.spec.features.iter().zip(&ep.acc).enumerate() {
            let s = match (&ep.given_stats, acc) {
                (Some(given), _) => Some(given[k].clone()),
                (None, FeatureAcc::Vector(v)) => v.finish(),
                (None, FeatureAcc::Image(i)) => i.finish(),
            }
            .ok_or_else(|| self.err(format!("feature {}: no statistics", f.name)))?;
            stats.push((f.name.clone(), s));
        }
        let n = ep.frames;
        let defaults =
            default_column_stats(self.spec.fps, n, ep.from_index, ep.index, ep.task_index)
                .ok_or_else(|| self.err("empty episode"))?;
        stats.extend(defaults);
        let only_stats: Vec<FeatureStats> = stats.iter().map(|x| x.1.clone()).collect();
        self.episodes_meta.push(&EpisodeRow {
            episode_index: ep.index as i64,
            task: &self.tasks[ep.task_index as usize],
            length: n as i64,
            data_chunk: chunk as i64,
            data_file: file_idx as i64,
            from_index: ep.from_index as i64,
            to_index: (ep.from_index + n) as i64,
            stats: &only_stats,
            videos,
        })?;
        for (agg, s) in self.aggregates.iter_mut().zip(&only_stats) {
            agg.add(s);
        }
        self.episodes_done += 1;
        self.total_frames += n;
        let data_file = crate::dataset::data_file_path(chunk, file_idx);
        if self
            .file
            .as_ref()
            .is_some_and(|f| f.writer.bytes_written() as u64 >= self.opts.data_file_bytes)
        {
            self.close_file()?;
        }
        Ok(EpisodeSummary {
            episode_index: ep.index,
            frames: n,
            task_index: ep.task_index,
            from_index: ep.from_index,
            to_index: ep.from_index + n,
            data_file,
            stats,
        })
    }

    /// Discards the open episode: its buffered rows, its row groups already in the data file
    /// (the file is cut back to the completed episodes), its stats and a task only it used.
    pub fn abort_episode(&mut self) {
        let Some(ep) = self.episode.take() else {
            return;
        };
        self.columns = new_columns(&self.spec);
        self.defaults = DefaultBufs::default();
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        if let Some(v) = &mut self.video {
            v.abort_episode();
        }
        if ep.task_is_new
            && let Some(t) = self.tasks.pop()
        {
            self.task_ids.remove(&t);
        }
        if let Err(e) = self.cut_back_file() {
            // The data file could not be restored: nothing more may be written.
            self.failed = true;
            let _ = e;
        }
    }

    /// Bytes currently held: buffered rows, the encoders' in-progress row groups and the
    /// statistics state (the sum of [`Self::memory_usage`]).
    pub fn memory_bytes(&self) -> usize {
        self.memory_usage().total()
    }

    /// What [`Self::memory_bytes`] is made of.
    pub fn memory_usage(&self) -> MemoryUsage {
        let stats: usize = self.episode.as_ref().map_or(0, |ep| {
            ep.acc
                .iter()
                .map(|a| match a {
                    FeatureAcc::Vector(v) => v.memory_bytes(),
                    FeatureAcc::Image(i) => i.memory_bytes(),
                })
                .sum()
        });
        MemoryUsage {
            buffered_rows: self.buffered_bytes,
            data_encoder: self.file.as_ref().map_or(0, |f| f.writer.memory_size()),
            episodes_encoder: self.episodes_meta.memory_bytes(),
            stats,
        }
    }

    /// Completes the dataset: closes the data and episodes files, writes `tasks.parquet`,
    /// `stats.json` and `info.json`, fsyncs, and renames the staging directory to the output.
    pub fn finish(mut self) -> Result<DatasetSummary> {
        self.check_usable()?;
        if let Some(ep) = &self.episode {
            return Err(self.err(format!(
                "episode {} is still open; end or abort it before finish",
                ep.index
            )));
        }
        if self.episodes_done == 0 {
            return Err(self.err("no episode was written"));
        }
        let r = self.finish_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn finish_inner(&mut self) -> Result<DatasetSummary> {
        self.close_file()?;
        let mut video_files = match &mut self.video {
            Some(v) => v.finish()?,
            None => Vec::new(),
        };
        // Files carried over (appended to, or adopted) that no episode of this run continued.
        for (_, rel) in &self.video_carried {
            if !video_files.contains(rel) {
                video_files.push(rel.clone());
            }
        }
        self.episodes_meta.close()?;
        let meta_dir = self.staging.join("meta");
        meta::write_tasks(&meta_dir.join("tasks.parquet"), &self.tasks)?;

        let names = meta::stats_features(&self.spec);
        let mut stats = Vec::with_capacity(names.len());
        for ((name, _), agg) in names.into_iter().zip(&self.aggregates) {
            let s = agg
                .finish()
                .ok_or_else(|| self.err(format!("feature {name}: no statistics")))?;
            stats.push((name, s));
        }
        meta::write_synced(
            &meta_dir.join("stats.json"),
            meta::stats_json(&stats).as_bytes(),
        )?;
        let mb = self.opts.data_file_bytes as f64 / MIB as f64;
        let data_files_size_in_mb = if mb.fract() == 0.0 {
            serde_json::Number::from(mb as u64)
        } else {
            serde_json::Number::from_f64(mb).unwrap_or_else(|| serde_json::Number::from(0))
        };
        let info = meta::info_json(
            &self.spec,
            &InfoTotals {
                total_episodes: self.episodes_done,
                total_frames: self.total_frames,
                total_tasks: self.tasks.len() as u64,
                chunks_size: self.opts.chunks_size,
                data_files_size_in_mb,
            },
        );
        meta::write_synced(&meta_dir.join("info.json"), info.as_bytes())?;
        for (name, bytes) in &self.extra_meta {
            meta::write_synced(&meta_dir.join(name), bytes)?;
        }

        // Directory entries: every folder we created.
        let mut dirs = vec![
            meta_dir.clone(),
            meta_dir.join("episodes"),
            meta_dir.join("episodes/chunk-000"),
            self.staging.join("data"),
            self.staging.clone(),
        ];
        for f in self.data_files.iter().chain(&video_files) {
            if let Some(d) = Path::new(f).parent() {
                dirs.push(self.staging.join(d));
                if let Some(key_dir) = d.parent().filter(|_| f.starts_with("videos/")) {
                    dirs.push(self.staging.join(key_dir));
                }
            }
        }
        if !video_files.is_empty() {
            dirs.push(self.staging.join("videos"));
        }
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            sync_dir(d)?;
        }
        self.publish()?;
        Ok(DatasetSummary {
            path: self.out.clone(),
            total_episodes: self.episodes_done,
            total_frames: self.total_frames,
            total_tasks: self.tasks.len() as u64,
            data_files: self.data_files.clone(),
        })
    }
}
