//! LeRobot v2.1 output: a bounded-memory layout converter between the v3.0 datasets this crate
//! writes and the v2.1 layout lerobot 0.3.x reads (rules in `docs/lerobot-v21.md`).
//!
//! v3.0 → v2.1 ([`to_v21`]) streams each v3.0 data file in small batches and splits its rows
//! into one parquet per episode (never holding an episode whole), cuts each episode's frames
//! out of the v3.0 MP4 files by ffmpeg stream copy (every episode of our v3.0 videos is its own
//! segment starting on a keyframe), and writes `info.json`, `episodes.jsonl`, `tasks.jsonl`,
//! `episodes_stats.jsonl` and `stats.json`. It can append to an existing v2.1 dataset (a
//! [`V21Base`]): the base's files are hard-linked into the staging directory and the new
//! episodes renumbered after them, so a nightly run costs only its new episodes.
//!
//! v2.1 → v3.0 ([`to_v30`]) reads the episodes back through the normal
//! [`crate::dataset::DatasetWriter`] with their statistics copied, and joins the episode MP4s
//! back into v3.0 files by stream copy.
//!
//! | file       | responsibility                                                          |
//! |------------|-------------------------------------------------------------------------|
//! | `info`     | v2.1 `info.json` as one serde type (written, read back, its spec)       |
//! | `v30`      | read a v3.0 dataset's info, tasks and episode rows (with video spans)   |
//! | `v21`      | write the v2.1 layout (data split, video cuts, jsonl metadata, publish) |
//! | `back`     | v2.1 → v3.0: data rows and statistics                                   |
//! | `back_video` | v2.1 → v3.0 of video features: MP4s joined, episodes parquet rewritten |
//! | `validate` | every rule lerobot 0.3.3 enforces on a v2.1 dataset                     |

mod back;
mod back_video;
mod info;
mod v21;
mod v30;
mod validate;

use std::path::{Path, PathBuf};

pub(crate) use v21::{
    LayoutOptions, LayoutSummary, STAGING_SUFFIX, V21Base, publish, recover, to_v21,
};
pub use validate::validate_v21;

use crate::dataset::info::InfoFeature;
use crate::error::{Error, Result};

/// `codebase_version` of the v2.1 layout.
const V21: &str = "v2.1";
/// Episodes per `chunk-XXX` folder in v2.1 (lerobot 0.3.3's `DEFAULT_CHUNK_SIZE`): 1000.
const V21_CHUNKS_SIZE: u64 = 1000;
/// v2.1 `data_path` template.
const V21_DATA_PATH: &str = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet";
/// v2.1 `video_path` template.
const V21_VIDEO_PATH: &str =
    "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4";

/// A dataset layout version this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    V21,
    V30,
}

impl Format {
    /// `v2.1` or `v3.0` (also accepts `2.1`, `3.0`, `v21`, `v30`).
    pub(crate) fn parse(s: &str) -> Result<Format> {
        match s.trim_start_matches('v') {
            "2.1" | "21" => Ok(Format::V21),
            "3.0" | "30" | "3" => Ok(Format::V30),
            _ => Err(Error::Usage(format!("format {s:?}: expected v2.1 or v3.0"))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::V21 => V21,
            Format::V30 => crate::dataset::CODEBASE_VERSION,
        }
    }
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// The layout version of the dataset at `dataset`, from its `info.json`.
pub(crate) fn detect(dataset: &Path) -> Result<Format> {
    let version = info::read_version(dataset)?;
    match version.as_str() {
        Some(V21) => Ok(Format::V21),
        Some(v) if v == crate::dataset::CODEBASE_VERSION => Ok(Format::V30),
        other => Err(bad(
            &dataset.join("meta/info.json"),
            format!("codebase_version {other:?}: this tool reads v2.1 and v3.0"),
        )),
    }
}

/// Whether `dataset` holds a v2.1 dataset (its `info.json` says so).
pub(crate) fn is_v21(dataset: &Path) -> bool {
    detect(dataset).is_ok_and(|f| f == Format::V21)
}

/// `data/chunk-XXX/episode_YYYYYY.parquet` of a v2.1 episode.
fn v21_data_path(episode: u64) -> String {
    format!(
        "data/chunk-{:03}/episode_{episode:06}.parquet",
        episode / V21_CHUNKS_SIZE
    )
}

/// `videos/chunk-XXX/<key>/episode_YYYYYY.mp4` of a v2.1 episode and camera.
fn v21_video_path(key: &str, episode: u64) -> String {
    format!(
        "videos/chunk-{:03}/{key}/episode_{episode:06}.mp4",
        episode / V21_CHUNKS_SIZE
    )
}

/// Names of the video features among an `info.json`'s `features`, in declaration order.
fn video_keys(features: &[(String, InfoFeature)]) -> Vec<String> {
    features
        .iter()
        .filter(|(_, f)| f.dtype == "video")
        .map(|(k, _)| k.clone())
        .collect()
}

/// Sibling path `<out><suffix>` (staging, old copy, work directories of a run).
pub(crate) fn sibling(out: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", out.display()))
}

/// JSON text indented by four spaces, as lerobot's `write_json` writes it.
fn pretty4<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value or a derived struct (string keys) into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    let mut s = String::from_utf8(buf).unwrap_or_default();
    s.push('\n');
    s
}

/// Writes the v2.1 dataset at `src` as a v3.0 dataset at `out` (published by the writer's
/// rename; `opts.overwrite` to replace an existing one).
pub(crate) fn to_v30(
    src: &Path,
    out: &Path,
    opts: crate::dataset::WriterOptions,
) -> Result<crate::dataset::DatasetSummary> {
    let base = v21::V21Base::open(src)?;
    if base.info.video_keys().is_empty() {
        let spec = base.info.spec(&src.join("meta/info.json"))?;
        return back::copy_episodes(src, out, spec, opts);
    }
    back_video::to_v30_video(src, out, opts, &base)
}
