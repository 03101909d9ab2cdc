//! The streaming LeRobot v3.0 writer: frames → Arrow column buffers → Parquet row groups
//! flushed by size → data files rolled by size between episodes, with statistics kept on the
//! fly and the whole dataset published by one rename at the end.
//!
//! Layout on disk while writing: everything goes to `OUT.partial-<pid>-<n>` next to `OUT`;
//! [`DatasetWriter::finish`] fsyncs and renames it to `OUT`. Dropping an unfinished writer
//! removes the staging directory, and a killed process leaves only the `.partial-…` directory,
//! never something at `OUT`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    ArrayRef, BinaryBuilder, FixedSizeListArray, Float32Array, Int64Array, StringBuilder,
    StructArray,
};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, RowGroupMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::json;

use super::existing;
use super::meta::{self, EpisodeRow, EpisodesWriter, InfoTotals};
use super::schema::{self, HUGGINGFACE_META_KEY};
use super::spill::SpillStoreFactory;
use super::stats::{self, FeatureStats, ImageStats, SampledImage, StatsAggregate, VectorStats};
use super::video::{DEFAULT_VIDEO_BUDGET_BYTES, VideoSet, VideoSpan};
use super::{
    DEFAULT_COLUMNS, DatasetSpec, FeatureKind, FeatureValue, Frame, ImageFormat,
    MAX_ROW_GROUP_BYTES, MIB, WriterOptions,
};
use crate::error::{Error, Result};
use crate::memory::Budget;
use crate::process::pid_alive;

/// Smallest and largest data page the writer asks for (pages being filled are held in memory,
/// one per column; finished ones are spilled).
const MIN_PAGE_BYTES: usize = 8 << 10;
const MAX_PAGE_BYTES: usize = 1 << 20;

/// Bytes of the five default columns per row (f32 + 4 × i64).
const DEFAULT_ROW_BYTES: usize = 4 + 4 * 8;

/// Value of a default column at a frame of the episode (for its exact statistics).
type ColumnValue = Box<dyn Fn(u64) -> f64>;

/// Distinguishes staging directories of several writers in one process.
static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// What one finished episode produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSummary {
    pub episode_index: u64,
    pub frames: u64,
    pub task_index: u64,
    /// Global `index` of the first frame; the episode covers `from_index..to_index`.
    pub from_index: u64,
    pub to_index: u64,
    /// Data file holding the episode (relative to the dataset root).
    pub data_file: String,
    /// Per column (user features then the five defaults).
    pub stats: Vec<(String, FeatureStats)>,
}

/// Bytes held by a [`DatasetWriter`], by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Raw rows not yet handed to the Parquet encoder.
    pub buffered_rows: usize,
    /// The data file encoder's in-progress row group (`ArrowWriter::memory_size`).
    pub data_encoder: usize,
    /// The episodes parquet encoder's in-progress row group.
    pub episodes_encoder: usize,
    /// Statistics state of the open episode (sketches, histograms).
    pub stats: usize,
}

impl MemoryUsage {
    /// Sum of all parts.
    pub fn total(&self) -> usize {
        self.buffered_rows + self.data_encoder + self.episodes_encoder + self.stats
    }
}

/// What a finished dataset holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    pub path: PathBuf,
    pub total_episodes: u64,
    pub total_frames: u64,
    pub total_tasks: u64,
    pub data_files: Vec<String>,
}

/// Raw rows not yet handed to the encoder, one buffer per column.
enum ColumnBuf {
    Vector {
        len: usize,
        values: Vec<f32>,
    },
    Image {
        bytes: BinaryBuilder,
        paths: StringBuilder,
    },
    /// A video feature: no column; its frames go to the encoders.
    Video,
}

#[derive(Default)]
struct DefaultBufs {
    timestamp: Vec<f32>,
    frame_index: Vec<i64>,
    episode_index: Vec<i64>,
    index: Vec<i64>,
    task_index: Vec<i64>,
}

/// Per-feature statistics of the episode in progress.
enum FeatureAcc {
    Vector(VectorStats),
    Image(ImageStats),
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

struct DataFile {
    chunk: usize,
    file: usize,
    path: PathBuf,
    writer: ArrowWriter<File>,
    /// Row groups that belong to completed episodes (kept if the current one is aborted).
    kept_row_groups: usize,
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
}

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Dataset {
        path: path.to_path_buf(),
        what: format!("parquet: {e}"),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// fsyncs a directory so renames and new entries in it are durable.
fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Whether an existing path may be replaced by `overwrite`: a dataset or an empty directory,
/// never an arbitrary directory or file.
fn replaceable(out: &Path) -> bool {
    out.join("meta/info.json").is_file() || fs::read_dir(out).is_ok_and(|mut d| d.next().is_none())
}

impl DatasetWriter {
    /// Starts a dataset at `out` (which must not exist unless `opts.overwrite`), staging it in
    /// a sibling `.partial-…` directory.
    pub fn create(out: &Path, spec: DatasetSpec, opts: WriterOptions) -> Result<Self> {
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
        Self::start(out, spec, opts, false)
    }

    /// Continues the dataset at `out`: a staging copy is made of it (data files hard-linked,
    /// never modified; episode rows, tasks and per-episode stats read back), new episodes go
    /// into new data files, and [`Self::finish`] swaps the staged dataset in. Until then the
    /// existing dataset stays as it was.
    pub fn append(out: &Path, opts: WriterOptions) -> Result<Self> {
        let (spec, chunks_size) = existing::read_spec(out)?;
        let tasks = existing::read_tasks(out)?;
        let mut opts = opts;
        opts.chunks_size = chunks_size;
        let mut w = Self::start(out, spec, opts, true)?;
        let files = existing::data_files(out)?;
        for rel in files.values() {
            let (src, dst) = (out.join(rel), w.staging.join(rel));
            if let Some(dir) = dst.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(io_err(&dst))?;
                File::open(&dst)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err(&dst))?;
            }
            w.data_files.push(rel.clone());
        }
        if let Some((chunk, file)) = files.keys().next_back() {
            w.advance_file_name(*chunk, *file);
        }
        for t in tasks {
            w.task_ids.insert(t.clone(), w.tasks.len() as u64);
            w.tasks.push(t);
        }
        // Episode rows are streamed: memory does not grow with the number of episodes.
        let spec = w.spec.clone();
        let mut total_frames = 0;
        // Per video feature: its last file and the frames in it; every video file.
        let mut last_video: BTreeMap<usize, ((usize, usize, usize), u64)> = BTreeMap::new();
        let mut video_files: std::collections::BTreeSet<(usize, usize, usize)> = Default::default();
        let episodes = existing::for_each_episode(out, &spec, |ep| {
            if ep.from_index != total_frames {
                return Err(Error::Dataset {
                    path: out.to_path_buf(),
                    what: format!(
                        "episode {} starts at index {}, expected {total_frames}",
                        ep.episode_index, ep.from_index
                    ),
                });
            }
            total_frames = ep.to_index;
            w.episodes_meta.push(&EpisodeRow {
                episode_index: ep.episode_index as i64,
                task: &ep.task,
                length: ep.length as i64,
                data_chunk: ep.data_chunk as i64,
                data_file: ep.data_file as i64,
                from_index: ep.from_index as i64,
                to_index: ep.to_index as i64,
                stats: &ep.stats,
                videos: &ep.videos,
            })?;
            for (feature, span) in &ep.videos {
                let key = (*feature, span.chunk, span.file);
                let frames = (span.to_timestamp * f64::from(spec.fps)).round() as u64;
                let e = last_video.entry(*feature).or_insert((key, 0));
                if key > e.0 {
                    *e = (key, 0);
                }
                if key == e.0 {
                    e.1 = e.1.max(frames);
                }
                video_files.insert(key);
            }
            for (agg, s) in w.aggregates.iter_mut().zip(&ep.stats) {
                agg.add(s);
            }
            Ok(())
        })?;
        w.episodes_done = episodes;
        w.total_frames = total_frames;
        // Video files are hard-linked like the data files; each camera's last file is
        // continued by the next episodes (see `VideoSet::resume`).
        for &(feature, chunk, file) in &video_files {
            let rel = super::video_file_path(&spec.features[feature].name, chunk, file);
            let (src, dst) = (out.join(&rel), w.staging.join(&rel));
            if let Some(dir) = dst.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(io_err(&dst))?;
                File::open(&dst)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err(&dst))?;
            }
            w.video_carried.push((feature, rel));
        }
        w.video_resume = last_video
            .into_iter()
            .map(|(feature, ((_, chunk, file), frames))| (feature, chunk, file, frames))
            .collect();
        Ok(w)
    }

    /// The dataset's spec (for an appending writer: the one read from `info.json`).
    pub fn spec(&self) -> &DatasetSpec {
        &self.spec
    }

    /// Episodes completed so far (including those of the dataset being appended to).
    pub fn episodes_done(&self) -> u64 {
        self.episodes_done
    }

    /// Frames of the completed episodes.
    pub fn total_frames(&self) -> u64 {
        self.total_frames
    }

    /// Adds a file `meta/<name>` written (and fsynced) by [`Self::finish`].
    pub fn put_meta_file(&mut self, name: &str, bytes: Vec<u8>) {
        self.extra_meta.retain(|(n, _)| n != name);
        self.extra_meta.push((name.to_string(), bytes));
    }

    fn start(out: &Path, spec: DatasetSpec, opts: WriterOptions, replaces: bool) -> Result<Self> {
        schema::check_spec(&spec)?;
        if VideoSet::needed(&spec) {
            VideoSet::check(&spec, &opts.video)?;
        }
        if opts.row_group_bytes == 0 || opts.row_group_bytes > MAX_ROW_GROUP_BYTES {
            return Err(Error::Config(format!(
                "row group size {} bytes is outside 1..={MAX_ROW_GROUP_BYTES}",
                opts.row_group_bytes
            )));
        }
        if opts.buffer_bytes == 0 {
            return Err(Error::Config("writer buffer size must be > 0".into()));
        }
        if opts.chunks_size == 0 || opts.data_file_bytes == 0 {
            return Err(Error::Config(
                "chunks_size and data_file_bytes must be > 0".into(),
            ));
        }
        let dataset_err = |what: String| Error::Dataset {
            path: out.to_path_buf(),
            what,
        };
        let name = out
            .file_name()
            .ok_or_else(|| dataset_err("output path has no final component".into()))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let seq = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut staging_name = name.to_os_string();
        staging_name.push(format!(".partial-{}-{seq}", std::process::id()));
        let staging = parent.join(staging_name);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        let ep_dir = staging.join("meta/episodes/chunk-000");
        fs::create_dir_all(&ep_dir).map_err(io_err(&ep_dir))?;
        let ep_path = staging.join(super::episodes_file_path(0, 0));
        let episodes_meta = match EpisodesWriter::create(&ep_path, &spec) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };

        let schema = schema::data_schema(&spec);
        let props = data_properties(&spec, &schema, opts.buffer_bytes);
        let spill = Arc::new(SpillStoreFactory::new(staging.clone()));
        let columns = new_columns(&spec);
        let n_stats = spec.features.len() + DEFAULT_COLUMNS.len();
        Ok(DatasetWriter {
            out: out.to_path_buf(),
            staging,
            spec,
            opts,
            schema,
            props,
            spill,
            columns,
            defaults: DefaultBufs::default(),
            buffered_rows: 0,
            buffered_bytes: 0,
            file: None,
            next_file: (0, 0),
            data_files: Vec::new(),
            episode: None,
            episodes_done: 0,
            total_frames: 0,
            tasks: Vec::new(),
            task_ids: HashMap::new(),
            episodes_meta,
            aggregates: vec![StatsAggregate::default(); n_stats],
            failed: false,
            published: false,
            replaces,
            extra_meta: Vec::new(),
            video: None,
            video_budget: None,
            video_resume: Vec::new(),
            video_carried: Vec::new(),
            copying: false,
        })
    }

    /// Bounds the frames in flight to the video encoders (decoded RGB plus encoded bytes, and
    /// the decode threads' scratch); default [`DEFAULT_VIDEO_BUDGET_BYTES`]. Set it before the
    /// first episode.
    pub fn set_video_budget(&mut self, budget: Budget) {
        self.video_budget = Some(budget);
    }

    /// Starts the video encoders of the episode being begun (the set itself at the first one).
    fn begin_video(&mut self) -> Result<()> {
        if !VideoSet::needed(&self.spec) {
            return Ok(());
        }
        if self.video.is_none() {
            let budget = self.video_budget.clone().unwrap_or_else(|| {
                Budget::new(
                    "video frames in flight",
                    DEFAULT_VIDEO_BUDGET_BYTES,
                    DEFAULT_VIDEO_BUDGET_BYTES,
                )
            });
            let mut set = VideoSet::new(
                &self.staging,
                &self.spec,
                &self.opts.video,
                self.opts.chunks_size,
                budget,
            )?;
            for (feature, rel) in &self.video_carried {
                set.carry_file(*feature, rel.clone());
            }
            for &(feature, chunk, file, frames) in &self.video_resume {
                set.resume(feature, chunk, file, frames)?;
            }
            self.video = Some(set);
        }
        match &mut self.video {
            Some(v) if self.copying => v.begin_copied_episode(),
            Some(v) => v.begin_episode(),
            None => Ok(()),
        }
    }

    /// Finishes the episode's videos; on failure the episode is aborted (and the writer is
    /// unusable if completed episodes lost their video).
    fn end_video(&mut self) -> Result<Vec<(usize, VideoSpan)>> {
        let Some(v) = &mut self.video else {
            return Ok(Vec::new());
        };
        let rows = self.episode.as_ref().map_or(0, |e| e.frames);
        match v.end_episode(rows) {
            Ok(spans) => Ok(spans),
            Err(e) => {
                if v.is_broken() {
                    self.failed = true;
                }
                self.abort_episode();
                Err(e)
            }
        }
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
    pub fn begin_copied_episode(&mut self, task: &str, stats: Vec<FeatureStats>) -> Result<()> {
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

    /// Gives a copied episode (see [`Self::begin_copied_episode`]) the video of feature
    /// `feature`: `frames` frames from frame `from_frame` of the MP4 file `src`, stream-copied
    /// (not re-encoded). The frames pushed for a copied episode carry placeholders for video
    /// features (see [`existing::StoredDataset::read_frames`]).
    pub fn copy_video(
        &mut self,
        feature: usize,
        src: &Path,
        from_frame: u64,
        frames: u64,
    ) -> Result<()> {
        if !self.episode.as_ref().is_some_and(|e| e.copied) {
            return Err(self.err("copy_video outside a copied episode"));
        }
        match &mut self.video {
            Some(v) => v.copy_segment(feature, src, from_frame, frames),
            None => Err(self.err("the dataset has no video features")),
        }
    }

    /// Checks a frame against the spec without changing any state.
    fn check_frame(&self, ep: &Episode, frame: &Frame) -> Result<()> {
        let at =
            |what: String| self.err(format!("episode {} frame {}: {what}", ep.index, ep.frames));
        if frame.values.len() != self.spec.features.len() {
            return Err(at(format!(
                "{} values for {} features",
                frame.values.len(),
                self.spec.features.len()
            )));
        }
        for (f, v) in self.spec.features.iter().zip(&frame.values) {
            match (&f.kind, v) {
                // A copied episode's video comes as a segment, not as frames.
                (FeatureKind::Video { .. }, _) if ep.copied => {}
                (FeatureKind::Vector { len, .. }, FeatureValue::Vector(x)) => {
                    if x.len() != *len {
                        return Err(at(format!(
                            "feature {}: {} values, expected {len}",
                            f.name,
                            x.len()
                        )));
                    }
                    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                        return Err(at(format!(
                            "feature {}: element {i} is {} (stats need finite values)",
                            f.name, x[i]
                        )));
                    }
                }
                (
                    FeatureKind::Image { height, width, .. }
                    | FeatureKind::Video { height, width, .. },
                    FeatureValue::Image { bytes, format },
                ) => {
                    let (w, h) = stats::image_dimensions(bytes, *format)
                        .map_err(|e| at(format!("feature {}: {e}", f.name)))?;
                    if (h, w) != (*height, *width) {
                        return Err(at(format!(
                            "feature {}: image is {h}x{w} (HxW), declared {height}x{width}",
                            f.name
                        )));
                    }
                }
                _ => {
                    return Err(at(format!(
                        "feature {}: value kind does not match the declared feature",
                        f.name
                    )));
                }
            }
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
    pub fn push_presampled(&mut self, frame: Frame, sampled: Presampled) -> Result<()> {
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

    /// A sampler that decodes lerobot's image-statistics sample of this episode's frames, in
    /// frame order, anywhere (see [`Self::push_presampled`]).
    pub fn sampler(&self) -> Result<FrameSampler> {
        let ep = self
            .episode
            .as_ref()
            .ok_or_else(|| self.err("sampler without begin_episode"))?;
        let features = self
            .spec
            .features
            .iter()
            .zip(&ep.acc)
            .map(|(f, acc)| match (acc, &f.kind) {
                (
                    FeatureAcc::Image(st),
                    FeatureKind::Image { height, width, .. }
                    | FeatureKind::Video { height, width, .. },
                ) => Some((st.clone(), (*height, *width))),
                _ => None,
            })
            .collect();
        Ok(FrameSampler {
            features,
            next_frame: ep.frames as usize,
        })
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
                        None => Err(Error::Config("video encoders missing".into())),
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

    /// Opens the next data file if none is open.
    fn ensure_file(&mut self) -> Result<&mut DataFile> {
        if self.file.is_none() {
            let (chunk, file) = self.next_file;
            let rel = super::data_file_path(chunk, file);
            let path = self.staging.join(&rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let f = File::create(&path).map_err(io_err(&path))?;
            let options = ArrowWriterOptions::new()
                .with_properties(self.props.clone())
                .with_page_store_factory(self.spill.clone());
            let writer = ArrowWriter::try_new_with_options(f, self.schema.clone(), options)
                .map_err(pq_err(&path))?;
            self.file = Some(DataFile {
                chunk,
                file,
                path,
                writer,
                kept_row_groups: 0,
            });
        }
        self.file
            .as_mut()
            .ok_or_else(|| Error::Config("data file vanished".into()))
    }

    /// Moves the buffered rows into the encoder's in-progress row group.
    fn encode_buffered(&mut self) -> Result<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let batch = self.take_batch()?;
        let file = self.ensure_file()?;
        file.writer.write(&batch).map_err(pq_err(&file.path))
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.writer.flush().map_err(pq_err(&f.path))?;
        }
        Ok(())
    }

    /// Builds a record batch from the buffers and empties them.
    fn take_batch(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for col in &mut self.columns {
            arrays.push(match col {
                ColumnBuf::Video => continue,
                ColumnBuf::Vector { len, values } => {
                    let values = Float32Array::from(std::mem::take(values));
                    if *len == 1 {
                        Arc::new(values)
                    } else {
                        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
                        Arc::new(
                            FixedSizeListArray::try_new(item, *len as i32, Arc::new(values), None)
                                .map_err(|e| Error::Config(format!("arrow: {e}")))?,
                        )
                    }
                }
                ColumnBuf::Image { bytes, paths } => Arc::new(
                    StructArray::try_new(
                        schema::image_fields(),
                        vec![Arc::new(bytes.finish()), Arc::new(paths.finish())],
                        None,
                    )
                    .map_err(|e| Error::Config(format!("arrow: {e}")))?,
                ),
            });
        }
        let d = std::mem::take(&mut self.defaults);
        arrays.push(Arc::new(Float32Array::from(d.timestamp)));
        arrays.push(Arc::new(Int64Array::from(d.frame_index)));
        arrays.push(Arc::new(Int64Array::from(d.episode_index)));
        arrays.push(Arc::new(Int64Array::from(d.index)));
        arrays.push(Arc::new(Int64Array::from(d.task_index)));
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| self.err(format!("arrow: {e}")))
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
            .ok_or_else(|| Error::Config("episode has rows but no data file".into()))?;
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
        let fps = self.spec.fps;
        let (from, e, t) = (ep.from_index, ep.index, ep.task_index);
        let defaults: [(&str, ColumnValue); 5] = [
            ("timestamp", Box::new(move |i| f64::from(timestamp(i, fps)))),
            ("frame_index", Box::new(|i| i as f64)),
            ("episode_index", Box::new(move |_| e as f64)),
            ("index", Box::new(move |i| (from + i) as f64)),
            ("task_index", Box::new(move |_| t as f64)),
        ];
        for (name, f) in defaults {
            let s = stats::monotone_column_stats(n, f).ok_or_else(|| self.err("empty episode"))?;
            stats.push((name.to_string(), s));
        }
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
        let data_file = super::data_file_path(chunk, file_idx);
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

    /// Writes the footer of the open data file, fsyncs it and moves on to the next file name.
    fn close_file(&mut self) -> Result<()> {
        if let Some(mut f) = self.file.take() {
            f.writer.finish().map_err(pq_err(&f.path))?;
            f.writer.inner().sync_all().map_err(io_err(&f.path))?;
            self.data_files.push(super::data_file_path(f.chunk, f.file));
            self.advance_file_name(f.chunk, f.file);
        }
        Ok(())
    }

    fn advance_file_name(&mut self, chunk: usize, file: usize) {
        self.next_file = if file + 1 >= self.opts.chunks_size {
            (chunk + 1, 0)
        } else {
            (chunk, file + 1)
        };
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

    /// Drops everything after the completed episodes from the open data file.
    fn cut_back_file(&mut self) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let touched = f.writer.flushed_row_groups().len() > f.kept_row_groups
            || f.writer.in_progress_rows() > 0;
        if !touched {
            return Ok(());
        }
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        f.writer.sync().map_err(io_err(&f.path))?;
        let kept: Vec<RowGroupMetaData> =
            f.writer.flushed_row_groups()[..f.kept_row_groups].to_vec();
        drop(f.writer);
        if kept.is_empty() {
            // Only the aborted episode was in this file: remove it and reuse its name.
            fs::remove_file(&f.path).map_err(io_err(&f.path))?;
            return Ok(());
        }
        let tmp = f.path.with_extension("parquet.cut");
        let src = File::open(&f.path).map_err(io_err(&f.path))?;
        let dst = File::create(&tmp).map_err(io_err(&tmp))?;
        let aw = ArrowWriter::try_new(dst, self.schema.clone(), Some(self.props.clone()))
            .map_err(pq_err(&tmp))?;
        let (mut fw, _) = aw.into_serialized_writer().map_err(pq_err(&tmp))?;
        for rg in &kept {
            let mut rgw = fw.next_row_group().map_err(pq_err(&tmp))?;
            for col in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: col.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: col.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rgw.append_column(&src, close).map_err(pq_err(&tmp))?;
            }
            rgw.close().map_err(pq_err(&tmp))?;
        }
        fw.finish().map_err(pq_err(&tmp))?;
        fw.inner().sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &f.path).map_err(io_err(&f.path))?;
        // The cut file is complete; the next episode starts a new one.
        self.data_files.push(super::data_file_path(f.chunk, f.file));
        self.advance_file_name(f.chunk, f.file);
        Ok(())
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
        let video_files = match &mut self.video {
            Some(v) => v.finish()?,
            None => Vec::new(),
        };
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
            json!(mb as u64)
        } else {
            json!(mb)
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

    /// Renames the staging directory onto the output; an existing dataset (only with
    /// `overwrite`) is moved aside first and removed afterwards.
    fn publish(&mut self) -> Result<()> {
        let out = self.out.clone();
        let mut aside = None;
        if out.exists() {
            if !(self.opts.overwrite || self.replaces) || !replaceable(&out) {
                return Err(self.err("appeared while writing; not replacing it"));
            }
            let mut name = self.staging.as_os_str().to_os_string();
            name.push(".old");
            let old = PathBuf::from(name);
            fs::rename(&out, &old).map_err(io_err(&out))?;
            aside = Some(old);
        } else if self.replaces {
            return Err(self.err("disappeared while appending; not publishing"));
        }
        fs::rename(&self.staging, &out).map_err(io_err(&out))?;
        self.published = true;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        if let Some(old) = aside {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(())
    }
}

/// Finishes what a killed writer of `out` left behind: removes its `OUT.partial-<pid>-<n>`
/// staging directories (only those of processes no longer running) and, if it died between
/// moving the old dataset aside and renaming the new one in (`OUT` missing, a
/// `OUT.partial-<pid>-<n>.old` present), puts the old dataset back. Call it while holding the output's
/// lock. Returns what was done, one line each.
pub fn recover_staging(out: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let Some(name) = out.file_name() else {
        return Ok(notes);
    };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match fs::read_dir(&parent) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(notes),
        Err(e) => return Err(Error::io(&parent, e)),
    };
    let mut olds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&parent))?;
        let fname = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = fname.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        if rest.ends_with(".old") {
            olds.push(path);
        } else {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
            notes.push(format!(
                "removed {} (left by a run that stopped)",
                path.display()
            ));
        }
    }
    olds.sort();
    if !out.exists()
        && let Some(old) = olds.pop()
    {
        fs::rename(&old, out).map_err(io_err(out))?;
        sync_dir(&parent)?;
        notes.push(format!(
            "restored {} from {} (a publish was interrupted)",
            out.display(),
            old.display()
        ));
    }
    for old in olds {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
        notes.push(format!("removed {} (replaced dataset)", old.display()));
    }
    Ok(notes)
}

/// Decodes the image-statistics sample of frames off the writer's thread; made by
/// [`DatasetWriter::sampler`] after `begin_episode`, fed every frame in order.
#[derive(Debug, Clone)]
pub struct FrameSampler {
    /// Per feature: a copy of the episode's image stats (for its sample cursor) and the
    /// declared (height, width); `None` for vectors.
    features: Vec<Option<(ImageStats, (u32, u32))>>,
    next_frame: usize,
}

/// The decoded sample of one frame, for [`DatasetWriter::push_presampled`].
#[derive(Debug)]
pub struct Presampled {
    frame_index: usize,
    images: Vec<Option<SampledImage>>,
}

/// One image of a frame that lerobot's statistics sample takes, to decode (by
/// [`stats::sample_image`]) off the writer's thread.
#[derive(Debug, Clone, Copy)]
pub struct PlannedSample {
    /// Position among the frame's image features (the slot in [`Presampled`]).
    pub slot: usize,
    /// Index of the image in [`Frame::values`].
    pub value: usize,
    pub hits: u64,
    /// Declared (height, width) of the feature.
    pub expect: (u32, u32),
}

impl FrameSampler {
    /// Moves on to the next frame and says which of its images the sample takes: (frame
    /// index, number of image slots, the images to decode).
    pub fn plan(&mut self, frame: &Frame) -> (usize, usize, Vec<PlannedSample>) {
        let frame_index = self.next_frame;
        let mut planned = Vec::new();
        let mut slots = 0;
        for (value, (feature, v)) in self.features.iter_mut().zip(&frame.values).enumerate() {
            if let (Some((st, expect)), FeatureValue::Image { .. }) = (feature, v) {
                let hits = st.hits_at(frame_index);
                if hits > 0 {
                    planned.push(PlannedSample {
                        slot: slots,
                        value,
                        hits,
                        expect: *expect,
                    });
                }
                st.commit(frame_index, None);
                slots += 1;
            }
        }
        self.next_frame += 1;
        (frame_index, slots, planned)
    }
}

impl Presampled {
    /// The sample of frame `frame_index`, one entry per image feature.
    pub fn new(frame_index: usize, images: Vec<Option<SampledImage>>) -> Self {
        Presampled {
            frame_index,
            images,
        }
    }
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
pub fn timestamp(frame_index: u64, fps: u32) -> f32 {
    (frame_index as f64 / f64::from(fps)) as f32
}

/// The `path` of an image value: `frame-000012.jpg`.
pub fn image_path(frame_index: usize, format: ImageFormat) -> String {
    format!("frame-{frame_index:06}.{}", format.extension())
}

fn new_columns(spec: &DatasetSpec) -> Vec<ColumnBuf> {
    spec.features
        .iter()
        .map(|f| match &f.kind {
            FeatureKind::Vector { len, .. } => ColumnBuf::Vector {
                len: *len,
                values: Vec::new(),
            },
            FeatureKind::Image { .. } => ColumnBuf::Image {
                bytes: BinaryBuilder::new(),
                paths: StringBuilder::new(),
            },
            FeatureKind::Video { .. } => ColumnBuf::Video,
        })
        .collect()
}

/// Parquet properties of data files: snappy for numeric columns, no dictionaries; image bytes
/// uncompressed and without min/max statistics (encoded images neither compress nor
/// repeat, and their statistics would copy image prefixes into the footer). Data pages are
/// sized so that one being filled per column adds up to about `buffer_bytes`; with image
/// columns the encoder checks the page size after every value, so a page passes its limit by
/// at most one image.
fn data_properties(
    spec: &DatasetSpec,
    schema: &SchemaRef,
    buffer_bytes: usize,
) -> WriterProperties {
    let hf = schema
        .metadata()
        .get(HUGGINGFACE_META_KEY)
        .cloned()
        .unwrap_or_default();
    let leaves = schema::leaf_columns(spec).max(1);
    let page = (buffer_bytes / leaves).clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES);
    let has_images = spec
        .features
        .iter()
        .any(|f| matches!(f.kind, FeatureKind::Image { .. }));
    let mut b = WriterProperties::builder()
        .set_data_page_size_limit(page)
        .set_write_batch_size(if has_images { 1 } else { 1024 })
        .set_compression(Compression::SNAPPY)
        // Dictionary encoders pre-allocate tens of KiB per column whatever the row group size;
        // our columns are mostly unique values, and snappy still squeezes the constant ones.
        .set_dictionary_enabled(false)
        // Page-level statistics and offset indexes are held in memory for every page of the
        // file until it closes, and an episode (a whole bag) lives in one file: that memory
        // would grow with the bag, and so would row-group statistics (a few hundred bytes per
        // column per row group). LeRobot never uses them; meta/stats.json has the real ones.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_offset_index_disabled(true)
        .set_max_row_group_row_count(None)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            HUGGINGFACE_META_KEY.to_string(),
            hf,
        )]));
    for f in &spec.features {
        if let FeatureKind::Image { .. } = f.kind {
            let bytes = ColumnPath::new(vec![f.name.clone(), "bytes".into()]);
            let path = ColumnPath::new(vec![f.name.clone(), "path".into()]);
            b = b
                .set_column_dictionary_enabled(bytes.clone(), false)
                .set_column_compression(bytes.clone(), Compression::UNCOMPRESSED)
                .set_column_statistics_enabled(bytes, EnabledStatistics::None)
                .set_column_dictionary_enabled(path, false);
        }
    }
    b.build()
}
