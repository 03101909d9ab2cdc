//! Reading a v3.0 dataset this crate wrote, for laying it out as v2.1: `info.json` (its
//! [`InfoJson`]: every feature entry, videos included, is carried into v2.1's), tasks, and the episode rows with their data
//! location, video spans and per-episode statistics. Episode rows are streamed in batches of
//! [`crate::dataset::existing::EPISODE_BATCH_ROWS`].

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Float64Array, Int64Array, ListArray, StringArray};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::bad;
use crate::dataset::existing::EPISODE_BATCH_ROWS;
use crate::dataset::info::InfoFeature;
use crate::dataset::{DEFAULT_COLUMNS, FeatureStats, InfoJson, QUANTILES};
use crate::error::{Error, Result};

/// Where one episode's frames of one camera are in the v3.0 video files.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VideoRef {
    pub(crate) chunk: u64,
    pub(crate) file: u64,
    pub(crate) from_timestamp: f64,
    to_timestamp: f64,
}

/// One v3.0 episode row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Episode {
    pub(crate) index: u64,
    pub(crate) tasks: Vec<String>,
    pub(crate) length: u64,
    pub(crate) data_chunk: u64,
    pub(crate) data_file: u64,
    from_index: u64,
    /// Per video key of [`V30::video_keys`].
    pub(crate) videos: Vec<VideoRef>,
    /// Per feature of [`V30::stats_features`].
    pub(crate) stats: Vec<FeatureStats>,
}

/// A v3.0 dataset's metadata (everything but the episode rows, which are streamed).
#[derive(Debug, Clone)]
pub(crate) struct V30 {
    root: PathBuf,
    pub(crate) info: InfoJson,
    pub(crate) tasks: Vec<String>,
    pub(crate) video_keys: Vec<String>,
    /// Every feature with statistics (all of `info.json`'s features, in its order), and whether
    /// it is visual (stats shaped `[3, 1, 1]`).
    pub(crate) stats_features: Vec<(String, bool)>,
}

/// Every stats-bearing feature of an `info.json`: its features in order (visual ones flagged).
fn stats_features(features: &[(String, InfoFeature)]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = features
        .iter()
        .map(|(k, f)| (k.clone(), f.dtype == "image" || f.dtype == "video"))
        .collect();
    // Defaults last, as the writer stores them (info.json lists them last too).
    out.sort_by_key(|(k, _)| DEFAULT_COLUMNS.contains(&k.as_str()));
    out
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::parquet(path))
}

/// Every leaf number of a (nested) list value.
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

fn int_at(b: &RecordBatch, name: &str, row: usize) -> Option<i64> {
    b.column_by_name(name)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .filter(|a| !a.is_null(row))
        .map(|a| a.value(row))
}

fn float_at(b: &RecordBatch, name: &str, row: usize) -> Option<f64> {
    b.column_by_name(name)?
        .as_any()
        .downcast_ref::<Float64Array>()
        .filter(|a| !a.is_null(row))
        .map(|a| a.value(row))
}

impl V30 {
    /// Reads the metadata of the v3.0 dataset at `root`.
    pub(crate) fn open(root: &Path) -> Result<V30> {
        let info = InfoJson::read(root)?;
        if info.codebase_version != crate::dataset::CODEBASE_VERSION {
            return Err(bad(
                &root.join("meta/info.json"),
                format!(
                    "codebase_version {:?}, expected {}",
                    info.codebase_version,
                    crate::dataset::CODEBASE_VERSION
                ),
            ));
        }
        let tasks = crate::dataset::existing::read_tasks(root)?;
        Ok(V30 {
            root: root.to_path_buf(),
            video_keys: super::video_keys(&info.features),
            stats_features: stats_features(&info.features),
            info,
            tasks,
        })
    }

    /// Streams the episode rows in `episode_index` order (checked to run 0, 1, 2, …).
    pub(crate) fn for_each_episode(
        &self,
        mut sink: impl FnMut(Episode) -> Result<()>,
    ) -> Result<u64> {
        let mut files = Vec::new();
        let dir = self.root.join("meta/episodes");
        for c in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let c = c.map_err(|e| Error::io(&dir, e))?.path();
            if let Ok(rd) = std::fs::read_dir(&c) {
                for f in rd.flatten() {
                    let p = f.path();
                    if p.extension().is_some_and(|e| e == "parquet") {
                        files.push(p);
                    }
                }
            }
        }
        files.sort();
        let mut next = 0u64;
        for p in files {
            for b in open(&p)?
                .with_batch_size(EPISODE_BATCH_ROWS)
                .build()
                .map_err(Error::parquet(&p))?
            {
                let b = b.map_err(Error::arrow(&p))?;
                for row in 0..b.num_rows() {
                    let e = self.episode_at(&p, &b, row)?;
                    if e.index != next {
                        return Err(bad(
                            &p,
                            format!("row {row}: episode_index {}, expected {next}", e.index),
                        ));
                    }
                    next += 1;
                    sink(e)?;
                }
            }
        }
        Ok(next)
    }

    fn episode_at(&self, p: &Path, b: &RecordBatch, row: usize) -> Result<Episode> {
        let get = |name: &str| {
            int_at(b, name, row)
                .filter(|v| *v >= 0)
                .map(|v| v as u64)
                .ok_or_else(|| bad(p, format!("row {row}: {name} missing or negative")))
        };
        let getf = |name: &str| {
            float_at(b, name, row).ok_or_else(|| bad(p, format!("row {row}: {name} missing")))
        };
        let tasks_col = b
            .column_by_name("tasks")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .ok_or_else(|| bad(p, "tasks column missing"))?;
        let list = tasks_col.value(row);
        let tasks: Vec<String> = list
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|t| (0..t.len()).map(|i| t.value(i).to_string()).collect())
            .unwrap_or_default();
        if tasks.is_empty() {
            return Err(bad(p, format!("row {row}: no task")));
        }
        let mut videos = Vec::with_capacity(self.video_keys.len());
        for k in &self.video_keys {
            videos.push(VideoRef {
                chunk: get(&format!("videos/{k}/chunk_index"))?,
                file: get(&format!("videos/{k}/file_index"))?,
                from_timestamp: getf(&format!("videos/{k}/from_timestamp"))?,
                to_timestamp: getf(&format!("videos/{k}/to_timestamp"))?,
            });
        }
        let mut stats = Vec::with_capacity(self.stats_features.len());
        for (name, image) in &self.stats_features {
            let col = |key: &str| -> Result<Vec<f64>> {
                let c = b
                    .column_by_name(&format!("stats/{name}/{key}"))
                    .and_then(|c| c.as_any().downcast_ref::<ListArray>())
                    .ok_or_else(|| bad(p, format!("stats/{name}/{key} missing")))?;
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
        Ok(Episode {
            index: get("episode_index")?,
            tasks,
            length: get("length")?,
            data_chunk: get("data/chunk_index")?,
            data_file: get("data/file_index")?,
            from_index: get("dataset_from_index")?,
            videos,
            stats,
        })
    }
}
