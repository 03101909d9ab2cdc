//! Reading a dataset this crate wrote back in: its spec (from `info.json`), tasks, episode rows
//! with their per-episode statistics (for appending and re-aggregating `stats.json`), and the
//! frames of one episode (for merging). Memory: the episode rows are small (a few KiB each);
//! frames are read in batches of [`READ_BATCH_ROWS`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    ListArray, StringArray, StructArray,
};
use arrow::datatypes::Float32Type;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};

use super::info::InfoJson;
use super::meta::stats_features;
use super::stats::FeatureStats;
use super::{
    DatasetSpec, FeatureKind, FeatureSpec, FeatureValue, Frame, ImageFormat, QUANTILES,
    data_file_path, episodes_file_path,
};
use crate::error::{Error, Result};

/// Rows per batch when reading an episode's frames back (16: a few images per column).
pub(crate) const READ_BATCH_ROWS: usize = 16;

/// One episode row of `meta/episodes/…` with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEpisode {
    pub(crate) episode_index: u64,
    pub(crate) task: String,
    pub(crate) length: u64,
    pub(crate) data_chunk: usize,
    pub(crate) data_file: usize,
    pub(crate) from_index: u64,
    pub(crate) to_index: u64,
    /// Per stats feature (user features then the five defaults), as stored.
    pub(crate) stats: Vec<FeatureStats>,
    /// Per video feature (its index in the spec): where the episode is in its video file.
    pub(crate) videos: Vec<(usize, super::video::VideoSpan)>,
}

/// What an existing dataset holds (everything but the frames).
#[derive(Debug, Clone)]
pub(crate) struct StoredDataset {
    pub(crate) path: PathBuf,
    pub(crate) spec: DatasetSpec,
    pub(crate) tasks: Vec<String>,
    pub(crate) episodes: Vec<StoredEpisode>,
    /// `chunks_size` of `info.json`.
    pub(crate) chunks_size: usize,
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// The spec a dataset's `info.json` declares (user features in column order).
pub(crate) fn read_spec(dataset: &Path) -> Result<(DatasetSpec, usize)> {
    let info = InfoJson::read(dataset)?;
    let spec = info.spec(&dataset.join("meta/info.json"))?;
    Ok((spec, info.chunks_size as usize))
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::parquet(path))
}

/// `meta/tasks.parquet`, in `task_index` order.
pub(crate) fn read_tasks(dataset: &Path) -> Result<Vec<String>> {
    let p = dataset.join("meta/tasks.parquet");
    let mut rows: Vec<(i64, String)> = Vec::new();
    for b in open(&p)?.build().map_err(Error::parquet(&p))? {
        let b = b.map_err(Error::arrow(&p))?;
        let (Some(i), Some(t)) = (
            b.column_by_name("task_index")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>()),
            b.column_by_name("task")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
        ) else {
            return Err(bad(&p, "task_index/task columns missing"));
        };
        rows.extend((0..b.num_rows()).map(|r| (i.value(r), t.value(r).to_string())));
    }
    rows.sort_by_key(|r| r.0);
    if rows.iter().enumerate().any(|(k, r)| r.0 != k as i64) {
        return Err(bad(&p, "task_index is not 0..n"));
    }
    Ok(rows.into_iter().map(|r| r.1).collect())
}

/// Every f64 leaf of a (possibly nested) list value.
fn leaves(a: &dyn Array, out: &mut Vec<f64>) {
    if let Some(l) = a.as_any().downcast_ref::<ListArray>() {
        for i in 0..l.len() {
            leaves(l.value(i).as_ref(), out);
        }
    } else if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        out.extend(f.values().iter().copied());
    } else if let Some(n) = a.as_any().downcast_ref::<Int64Array>() {
        out.extend(n.values().iter().map(|v| *v as f64));
    }
}

fn int_at(b: &arrow::record_batch::RecordBatch, name: &str, row: usize) -> Option<i64> {
    b.column_by_name(name)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(row))
}

/// Rows per batch when reading episode rows (64: each row holds every feature's stats).
pub(crate) const EPISODE_BATCH_ROWS: usize = 64;

/// The episode rows of `meta/episodes/chunk-000/file-000.parquet`, in `episode_index` order.
fn read_episodes(dataset: &Path, spec: &DatasetSpec) -> Result<Vec<StoredEpisode>> {
    let mut out = Vec::new();
    for_each_episode(dataset, spec, |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// Streams the episode rows to `sink` in file order, checking that `episode_index` runs
/// 0, 1, 2, … (memory: one batch of [`EPISODE_BATCH_ROWS`] rows, however many episodes).
pub(crate) fn for_each_episode(
    dataset: &Path,
    spec: &DatasetSpec,
    mut sink: impl FnMut(StoredEpisode) -> Result<()>,
) -> Result<u64> {
    let p = dataset.join(episodes_file_path(0, 0));
    let feats = stats_features(spec);
    let mut next = 0u64;
    for b in open(&p)?
        .with_batch_size(EPISODE_BATCH_ROWS)
        .build()
        .map_err(Error::parquet(&p))?
    {
        let b = b.map_err(Error::arrow(&p))?;
        let tasks = b
            .column_by_name("tasks")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .ok_or_else(|| bad(&p, "tasks column missing"))?;
        for row in 0..b.num_rows() {
            let get = |name: &str| {
                int_at(&b, name, row)
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| bad(&p, format!("row {row}: {name} missing or negative")))
            };
            let task_list = tasks.value(row);
            let task = task_list
                .as_any()
                .downcast_ref::<StringArray>()
                .filter(|t| !t.is_empty())
                .map(|t| t.value(0).to_string())
                .ok_or_else(|| bad(&p, format!("row {row}: no task")))?;
            let mut stats = Vec::with_capacity(feats.len());
            for (name, image) in &feats {
                let col = |key: &str| -> Result<Vec<f64>> {
                    let c = b
                        .column_by_name(&format!("stats/{name}/{key}"))
                        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
                        .ok_or_else(|| bad(&p, format!("stats/{name}/{key} missing")))?;
                    let mut v = Vec::new();
                    leaves(c.value(row).as_ref(), &mut v);
                    Ok(v)
                };
                let count = col("count")?.first().copied().unwrap_or(0.0) as u64;
                let mut quantiles: [Vec<f64>; 5] = Default::default();
                for (q, (key, _)) in quantiles.iter_mut().zip(QUANTILES) {
                    *q = col(key)?;
                }
                stats.push(FeatureStats {
                    min: col("min")?,
                    max: col("max")?,
                    mean: col("mean")?,
                    std: col("std")?,
                    quantiles,
                    count,
                    image: *image,
                });
            }
            let mut videos = Vec::new();
            for (fi, f) in spec.features.iter().enumerate() {
                if !matches!(f.kind, FeatureKind::Video { .. }) {
                    continue;
                }
                let k = &f.name;
                let float = |c: &str| {
                    b.column_by_name(c)
                        .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
                        .map(|a| a.value(row))
                        .ok_or_else(|| bad(&p, format!("row {row}: {c} missing")))
                };
                videos.push((
                    fi,
                    super::video::VideoSpan {
                        chunk: get(&format!("videos/{k}/chunk_index"))? as usize,
                        file: get(&format!("videos/{k}/file_index"))? as usize,
                        from_timestamp: float(&format!("videos/{k}/from_timestamp"))?,
                        to_timestamp: float(&format!("videos/{k}/to_timestamp"))?,
                    },
                ));
            }
            let episode_index = get("episode_index")? as u64;
            if episode_index != next {
                return Err(bad(
                    &p,
                    format!("row {row}: episode_index {episode_index}, expected {next}"),
                ));
            }
            next += 1;
            sink(StoredEpisode {
                episode_index,
                task,
                length: get("length")? as u64,
                data_chunk: get("data/chunk_index")? as usize,
                data_file: get("data/file_index")? as usize,
                from_index: get("dataset_from_index")? as u64,
                to_index: get("dataset_to_index")? as u64,
                stats,
                videos,
            })?;
        }
    }
    Ok(next)
}

impl StoredDataset {
    /// Reads everything but the frames of the dataset at `path`.
    pub(crate) fn open(path: &Path) -> Result<StoredDataset> {
        let (spec, chunks_size) = read_spec(path)?;
        let tasks = read_tasks(path)?;
        let episodes = read_episodes(path, &spec)?;
        Ok(StoredDataset {
            path: path.to_path_buf(),
            spec,
            tasks,
            episodes,
            chunks_size,
        })
    }

    /// Where episode `k`'s frames of video feature `feature` are: the MP4 file and the first
    /// frame's number in it.
    pub(crate) fn video_of(&self, k: usize, feature: usize) -> Result<(PathBuf, u64)> {
        let ep = self
            .episodes
            .get(k)
            .ok_or_else(|| bad(&self.path, format!("no episode {k}")))?;
        let (_, span) = ep.videos.iter().find(|v| v.0 == feature).ok_or_else(|| {
            bad(
                &self.path,
                format!("episode {k} has no video of feature {feature}"),
            )
        })?;
        let name = &self.spec.features[feature].name;
        let file = self
            .path
            .join(super::video_file_path(name, span.chunk, span.file));
        let first = (span.from_timestamp * f64::from(self.spec.fps)).round() as u64;
        Ok((file, first))
    }

    /// Streams the frames of episode `k` to `sink`, in frame order; video features get an
    /// empty placeholder (their frames are in [`Self::video_of`]).
    pub(crate) fn read_frames(
        &self,
        k: usize,
        mut sink: impl FnMut(Frame) -> Result<()>,
    ) -> Result<()> {
        let ep = self
            .episodes
            .get(k)
            .ok_or_else(|| bad(&self.path, format!("no episode {k}")))?;
        // Rows of a data file are in global index order: the episode starts after the rows of
        // the file's earlier episodes.
        let first_in_file = self
            .episodes
            .iter()
            .filter(|e| (e.data_chunk, e.data_file) == (ep.data_chunk, ep.data_file))
            .map(|e| e.from_index)
            .min()
            .unwrap_or(ep.from_index);
        let p = self.path.join(data_file_path(ep.data_chunk, ep.data_file));
        let builder = open(&p)?;
        // Video features have no data column: their values are placeholders (an empty
        // vector), their frames are in the MP4 files.
        let is_video = |f: &FeatureSpec| matches!(f.kind, FeatureKind::Video { .. });
        let n_feat = self.spec.features.iter().filter(|f| !is_video(f)).count();
        let mask = ProjectionMask::roots(builder.parquet_schema(), 0..n_feat);
        let selection = RowSelection::from(vec![
            RowSelector::skip((ep.from_index - first_in_file) as usize),
            RowSelector::select(ep.length as usize),
        ]);
        let reader = builder
            .with_projection(mask)
            .with_row_selection(selection)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(Error::parquet(&p))?;
        let mut seen = 0u64;
        for b in reader {
            let b = b.map_err(Error::arrow(&p))?;
            if b.num_columns() != n_feat {
                return Err(bad(&p, "data columns do not match info.json"));
            }
            for row in 0..b.num_rows() {
                let mut values = Vec::with_capacity(self.spec.features.len());
                let mut cols = b.columns().iter();
                for f in &self.spec.features {
                    if is_video(f) {
                        values.push(FeatureValue::Vector(Vec::new()));
                        continue;
                    }
                    let col = cols.next().ok_or_else(|| bad(&p, "data columns missing"))?;
                    values.push(value_at(&p, f, col.as_ref(), row)?);
                }
                sink(Frame { values })?;
                seen += 1;
            }
        }
        if seen != ep.length {
            return Err(bad(
                &p,
                format!(
                    "episode {}: {seen} rows read, {} expected",
                    ep.episode_index, ep.length
                ),
            ));
        }
        Ok(())
    }
}

/// One feature value of a data row.
pub(crate) fn value_at(
    p: &Path,
    f: &FeatureSpec,
    col: &dyn Array,
    row: usize,
) -> Result<FeatureValue> {
    let wrong = || {
        bad(
            p,
            format!("column {}: unexpected type {}", f.name, col.data_type()),
        )
    };
    match &f.kind {
        FeatureKind::Video { .. } => Err(bad(
            p,
            format!("feature {} is a video: it has no data column", f.name),
        )),
        FeatureKind::Vector { len: 1, .. } => {
            let a = col
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(wrong)?;
            Ok(FeatureValue::Vector(vec![a.value(row)]))
        }
        FeatureKind::Vector { .. } => {
            let a = col
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(wrong)?;
            let v = a.value(row);
            let v = v.as_primitive_opt::<Float32Type>().ok_or_else(wrong)?;
            Ok(FeatureValue::Vector(v.values().to_vec()))
        }
        FeatureKind::Image { .. } => {
            let s = col
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(wrong)?;
            let bytes = s
                .column_by_name("bytes")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or_else(wrong)?;
            let path = s
                .column_by_name("path")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(wrong)?;
            let format = if path.value(row).ends_with(".png") {
                ImageFormat::Png
            } else {
                ImageFormat::Jpeg
            };
            Ok(FeatureValue::Image {
                bytes: bytes.value(row).to_vec().into(),
                format,
            })
        }
    }
}

/// `(chunk, file)` → relative path of every data file under `data/`.
pub(crate) fn data_files(dataset: &Path) -> Result<BTreeMap<(usize, usize), String>> {
    let mut out = BTreeMap::new();
    let data = dataset.join("data");
    let chunks = match std::fs::read_dir(&data) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&data, e)),
    };
    for c in chunks {
        let c = c.map_err(|e| Error::io(&data, e))?;
        let cname = c.file_name().to_string_lossy().to_string();
        let Some(ci) = cname
            .strip_prefix("chunk-")
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        let dir = c.path();
        for f in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let f = f.map_err(|e| Error::io(&dir, e))?;
            let fname = f.file_name().to_string_lossy().to_string();
            if let Some(fi) = fname
                .strip_prefix("file-")
                .and_then(|s| s.strip_suffix(".parquet"))
                .and_then(|s| s.parse::<usize>().ok())
            {
                out.insert((ci, fi), data_file_path(ci, fi));
            }
        }
    }
    Ok(out)
}
