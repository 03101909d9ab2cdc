//! LeRobot v3.0 dataset output: the streaming [`DatasetWriter`], per-episode and dataset
//! [`stats`], and [`validate`], which checks a dataset directory against every rule in
//! `docs/lerobot-v3.md`.
//!
//! The writer holds at most about [`WriterOptions::buffer_bytes`] of raw rows and as much again of
//! encoded pages being filled; finished pages are spilled to the staging directory until their
//! row group ([`WriterOptions::row_group_bytes`], encoded) is flushed (`spill`). It keeps statistics in bounded state (Welford moments, a bounded quantile
//! sketch per vector element, a 256-bin histogram per image channel), streams episode metadata
//! rows to disk, and builds everything in a staging directory that is renamed onto the output only
//! by [`DatasetWriter::finish`]; an unfinished or failed writer never leaves something that looks
//! like a complete dataset.
//!
//! | file        | responsibility                                                    |
//! |-------------|-------------------------------------------------------------------|
//! | `schema`    | feature spec → Arrow schema, `info.json` features, `huggingface`  |
//! | `stats`     | streaming statistics, quantile sketch, image sampling, aggregation |
//! | `meta`      | `info.json`, `tasks.parquet`, episodes parquet, `stats.json`       |
//! | `writer`    | data files, row groups, file rolling, staging and publication     |
//! | `spill`     | the encoder's finished pages on disk until their row group is flushed |
//! | `validate`  | read a dataset back and list every rule it breaks                 |
//! | `existing`  | read a written dataset back: spec, tasks, episode rows + stats, frames |
//! | `raw_copy`  | a published data file linked, or rewritten with raw feature chunks and renumbered index columns (merge) |

pub(crate) mod existing;
pub(crate) mod info;
pub(crate) mod meta;
mod raw_copy;
mod schema;
mod spill;
pub(crate) mod stats;
mod validate;
pub mod video;
mod writer;

pub(crate) use info::InfoJson;
pub(crate) use stats::FeatureStats;
pub use validate::validate;
pub(crate) use writer::{Adopted, FrameSampler, Presampled, recover_staging};
pub use writer::{DatasetSummary, DatasetWriter, EpisodeSummary, MemoryUsage};

/// LeRobot format version written into `info.json`.
pub(crate) const CODEBASE_VERSION: &str = "v3.0";

/// File name, inside `meta/`, of the conversion log a run writes beside lerobot's files (its
/// content is `convert::manifest`'s; the dataset layer only carries the file along).
pub(crate) const MANIFEST_NAME: &str = "conversion_log.json";
/// Row-group sizing is a memory rule (footer metadata held per row group), so it lives in
/// [`crate::memory::plan`]; re-exported here where the writer's options use it.
pub(crate) use crate::memory::plan::DEFAULT_ROW_GROUP_BYTES;
/// Default bytes of raw rows buffered before they are handed to the encoder: 4 MiB.
const DEFAULT_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Default size after which a data file is closed and the next episode starts a new one:
/// 100 MiB (lerobot's `data_files_size_in_mb`).
pub(crate) const DEFAULT_DATA_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of files per `chunk-XXX` folder (lerobot's `chunks_size`): 1000.
pub(crate) const DEFAULT_CHUNKS_SIZE: usize = 1000;
/// lerobot's `video_files_size_in_mb`: a video file takes episodes until the next one would
/// pass this size (see [`video::VideoOptions::file_bytes`]): 200.
pub(crate) const VIDEO_FILES_SIZE_IN_MB: u64 = 200;
/// One mebibyte, the unit lerobot's `*_size_in_mb` keys use.
pub(crate) const MIB: u64 = 1024 * 1024;
/// Largest accepted `row_group_bytes`: 1 GiB, so one row group's image column stays well inside
/// Arrow's 2 GiB 32-bit offset limit for readers.
const MAX_ROW_GROUP_BYTES: usize = 1024 * 1024 * 1024;

/// Names of the five default columns every data row carries, in output order.
pub(crate) const DEFAULT_COLUMNS: [&str; 5] = [
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
];
/// Template of data file paths (`info.json` `data_path`).
const DATA_PATH_TEMPLATE: &str = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
/// Template of video file paths (`info.json` `video_path`, when there are video features).
const VIDEO_PATH_TEMPLATE: &str =
    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";

/// What the dataset holds: frame rate, robot type and the user features, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// Frames per second; `timestamp = frame_index / fps`. Must be > 0.
    pub fps: u32,
    /// `info.json` `robot_type` (null when `None`).
    pub robot_type: Option<String>,
    /// The user features, without the five default columns (the writer adds those).
    pub features: Vec<FeatureSpec>,
}

/// One user feature (a data column).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Column name, e.g. `observation.state`; never contains `/`.
    pub name: String,
    /// Value type and shape.
    pub kind: FeatureKind,
}

/// The value type of a feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// float32 vector of `len` elements: `fixed_size_list<float32>[len]`, or a plain float32
    /// column when `len == 1` (shape `[1]`, as lerobot stores scalars).
    Vector {
        len: usize,
        /// Element names (e.g. joint names); `len` of them when given.
        names: Option<Vec<String>>,
    },
    /// Encoded image stored in the parquet (`dtype: "image"`, `struct<bytes, path>`).
    Image {
        height: u32,
        width: u32,
        channels: u32,
    },
    /// Camera frames encoded into MP4 files under `videos/` (`dtype: "video"`), no parquet
    /// column. Frames arrive as [`FeatureValue::Image`] (JPEG/PNG) and are decoded for the
    /// encoder; `channels` is 3 (the encoder's RGB input).
    Video {
        height: u32,
        width: u32,
        channels: u32,
        codec: video::VideoCodec,
    },
}

impl FeatureKind {
    /// `(height, width)` of an image or video feature.
    pub(crate) fn image_size(&self) -> Option<(u32, u32)> {
        match self {
            FeatureKind::Image { height, width, .. } | FeatureKind::Video { height, width, .. } => {
                Some((*height, *width))
            }
            FeatureKind::Vector { .. } => None,
        }
    }
}

impl FeatureKind {
    /// The kind in a user's words: `float32[28]`, `image 480x640x3`, `video 480x640 (av1)`.
    fn describe(&self) -> String {
        match self {
            FeatureKind::Vector { len, .. } => format!("float32[{len}]"),
            FeatureKind::Image {
                height,
                width,
                channels,
            } => format!("image {height}x{width}x{channels}"),
            FeatureKind::Video {
                height,
                width,
                codec,
                ..
            } => format!("video {height}x{width} ({})", codec.name()),
        }
    }
}

impl DatasetSpec {
    /// The first difference between two datasets' layouts, in a user's words (`fps 30 here,
    /// 15 there`, `feature action: float32[14] here, float32[28] there`), or `None` when equal.
    /// `here` / `there` name the two sides.
    pub(crate) fn first_difference(
        &self,
        other: &DatasetSpec,
        here: &str,
        there: &str,
    ) -> Option<String> {
        if self.fps != other.fps {
            return Some(format!(
                "fps is {} in {here}, {} in {there}",
                self.fps, other.fps
            ));
        }
        for x in &self.features {
            let Some(y) = other.features.iter().find(|f| f.name == x.name) else {
                return Some(format!("feature {} is in {here}, not in {there}", x.name));
            };
            if x.kind.describe() != y.kind.describe() {
                return Some(format!(
                    "feature {} is {} in {here}, {} in {there}",
                    x.name,
                    x.kind.describe(),
                    y.kind.describe()
                ));
            }
            if x.kind != y.kind {
                return Some(format!(
                    "feature {} names its elements differently in {here} and {there}",
                    x.name
                ));
            }
        }
        if let Some(y) = other
            .features
            .iter()
            .find(|y| self.features.iter().all(|x| x.name != y.name))
        {
            return Some(format!("feature {} is in {there}, not in {here}", y.name));
        }
        let names = |d: &DatasetSpec| {
            d.features
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
        };
        if names(self) != names(other) {
            return Some(format!(
                "the features are in another order in {here} and {there}"
            ));
        }
        if self.robot_type != other.robot_type {
            return Some(format!(
                "robot_type is {:?} in {here}, {:?} in {there}",
                self.robot_type, other.robot_type
            ));
        }
        None
    }
}

/// Encoding of an image value's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    /// File extension used in the image `path` column (`frame-000012.jpg`).
    fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }
}

/// One feature's value in a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    Vector(Vec<f32>),
    /// Encoded image bytes, shared (a CompressedImage passes through without a copy).
    Image {
        bytes: bytes::Bytes,
        format: ImageFormat,
    },
}

/// One output row: a value per user feature, in [`DatasetSpec::features`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub values: Vec<FeatureValue>,
}

/// Size bounds and behaviour of a [`DatasetWriter`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriterOptions {
    /// Flush a Parquet row group once its encoded size reaches this many bytes (default
    /// [`DEFAULT_ROW_GROUP_BYTES`], at most [`MAX_ROW_GROUP_BYTES`]). Its finished pages wait on
    /// disk, so this does not cost memory. Every episode also ends its row group.
    pub row_group_bytes: usize,
    /// Hand buffered raw rows to the encoder once they reach this many bytes (default
    /// [`DEFAULT_BUFFER_BYTES`]); the encoder's pages being filled are sized to hold about as
    /// much again, so the writer's rows take about twice this in memory.
    pub buffer_bytes: usize,
    /// Close a data file once it holds this many bytes; checked between episodes, so an episode
    /// is never split and a file may pass the size by one episode (default
    /// [`DEFAULT_DATA_FILE_BYTES`]).
    pub data_file_bytes: u64,
    /// Files per `chunk-XXX` folder (default [`DEFAULT_CHUNKS_SIZE`]).
    pub chunks_size: usize,
    /// Replace an existing dataset at the output path (only one that has `meta/info.json`, or an
    /// empty directory).
    pub overwrite: bool,
    /// How [`FeatureKind::Video`] features are encoded (ignored without them).
    pub video: video::VideoOptions,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            row_group_bytes: DEFAULT_ROW_GROUP_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            data_file_bytes: DEFAULT_DATA_FILE_BYTES,
            chunks_size: DEFAULT_CHUNKS_SIZE,
            overwrite: false,
            video: video::VideoOptions::default(),
        }
    }
}

/// Quantile keys written for every feature, with their probabilities (lerobot's defaults).
pub(crate) const QUANTILES: [(&str, f64); 5] = [
    ("q01", 0.01),
    ("q10", 0.10),
    ("q50", 0.50),
    ("q90", 0.90),
    ("q99", 0.99),
];

/// Every statistic key, in the order lerobot writes them.
const STAT_KEYS: [&str; 10] = [
    "min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99",
];

/// `data/chunk-XXX/file-YYY.parquet` for a (chunk, file) pair.
pub(crate) fn data_file_path(chunk: usize, file: usize) -> String {
    format!("data/chunk-{chunk:03}/file-{file:03}.parquet")
}

/// `videos/<key>/chunk-XXX/file-YYY.mp4` for a video feature and a (chunk, file) pair.
pub fn video_file_path(key: &str, chunk: usize, file: usize) -> String {
    format!("videos/{key}/chunk-{chunk:03}/file-{file:03}.mp4")
}

/// `meta/episodes/chunk-XXX/file-YYY.parquet` for a (chunk, file) pair.
pub(crate) fn episodes_file_path(chunk: usize, file: usize) -> String {
    format!("meta/episodes/chunk-{chunk:03}/file-{file:03}.parquet")
}
