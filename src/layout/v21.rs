//! Writing the v2.1 layout from a v3.0 dataset (optionally after the episodes of an existing
//! v2.1 dataset), into a staging directory that [`publish`] renames onto the output.
//!
//! Memory: one batch of rows being read (4 rows with images, 1024 without), one episode
//! parquet's row group being encoded (at most [`LayoutOptions::row_group_bytes`]), one
//! `stats.json` aggregate per feature and one metadata line. Videos are cut by one ffmpeg
//! child at a time, by stream copy (no decoder or encoder runs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde_json::{Value, json};

use super::info::V21Info;
use super::v30::{Episode, V30};
use super::{
    V21, V21_CHUNKS_SIZE, V21_DATA_PATH, V21_VIDEO_PATH, bad, pretty4, sibling, v21_data_path,
    v21_video_path,
};
use crate::dataset::stats::{StatsAggregate, monotone_column_stats};
use crate::dataset::video::{INSTALL_HINT, TICKS_PER_FRAME, VideoOptions};
use crate::dataset::{FeatureStats, QUANTILES, data_file_path, video_file_path};
use crate::error::{Error, Result};

/// Rows per read batch when the data holds images: 4 (measured on a 259 MB three-camera
/// episode: 16 rows peaked at 40-47 MiB RSS, 4 rows at 33-37 MiB).
const IMAGE_BATCH_ROWS: usize = 4;
/// Rows per read batch without images: 1024.
const VECTOR_BATCH_ROWS: usize = 1024;
/// Suffix of the staging directory beside the output.
pub(crate) const STAGING_SUFFIX: &str = ".v21-staging";
/// Suffix the previous dataset is renamed to while the new one is swapped in.
const OLD_SUFFIX: &str = ".v21-old";

/// Bounds of a layout run.
#[derive(Debug, Clone)]
pub(crate) struct LayoutOptions {
    /// Encoded bytes an episode parquet holds before its row group is flushed.
    pub(crate) row_group_bytes: usize,
    /// The ffmpeg binary (for cutting videos).
    pub(crate) ffmpeg: PathBuf,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions {
            row_group_bytes: crate::dataset::DEFAULT_ROW_GROUP_BYTES,
            ffmpeg: VideoOptions::default().ffmpeg,
        }
    }
}

/// An existing v2.1 dataset new episodes are appended after.
#[derive(Debug, Clone)]
pub(crate) struct V21Base {
    root: PathBuf,
    pub(crate) info: V21Info,
    tasks: Vec<String>,
    pub(crate) episodes: u64,
    frames: u64,
}

impl V21Base {
    /// Reads the totals and tasks of the v2.1 dataset at `root`.
    pub(crate) fn open(root: &Path) -> Result<V21Base> {
        let info = V21Info::read(root)?;
        let p = root.join("meta/tasks.jsonl");
        let mut tasks: Vec<(u64, String)> = Vec::new();
        for_each_line(&p, |v, n| {
            let i = v["task_index"]
                .as_u64()
                .ok_or_else(|| bad(&p, format!("line {n}: task_index missing")))?;
            let t = v["task"]
                .as_str()
                .ok_or_else(|| bad(&p, format!("line {n}: task missing")))?;
            tasks.push((i, t.to_string()));
            Ok(())
        })?;
        tasks.sort();
        if tasks.iter().enumerate().any(|(k, (i, _))| *i != k as u64) {
            return Err(bad(&p, "task_index does not run 0, 1, 2, …"));
        }
        Ok(V21Base {
            root: root.to_path_buf(),
            episodes: info.total_episodes,
            frames: info.total_frames,
            info,
            tasks: tasks.into_iter().map(|(_, t)| t).collect(),
        })
    }
}

/// Calls `f(value, line_number)` for each JSON line of `path`, one line in memory at a time.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(Value, usize) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| bad(path, format!("line {}: json: {e}", n + 1)))?;
        f(v, n + 1)?;
    }
    Ok(())
}

/// What a layout wrote.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LayoutSummary {
    pub(crate) episodes: u64,
    pub(crate) frames: u64,
    pub(crate) tasks: u64,
    pub(crate) videos: u64,
}

/// One stats object of `episodes_stats.jsonl` back into [`FeatureStats`].
pub(crate) fn stats_from_json(v: &Value, image: bool) -> Option<FeatureStats> {
    let vals = |k: &str| -> Option<Vec<f64>> {
        let mut out = Vec::new();
        flatten(v.get(k)?, &mut out);
        Some(out)
    };
    let mut quantiles: [Vec<f64>; 5] = Default::default();
    for (q, (key, _)) in quantiles.iter_mut().zip(QUANTILES) {
        *q = vals(key)?;
    }
    Some(FeatureStats {
        min: vals("min")?,
        max: vals("max")?,
        mean: vals("mean")?,
        std: vals("std")?,
        quantiles,
        count: vals("count")?.first().copied()? as u64,
        image,
    })
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.extend(n.as_f64()),
        _ => {}
    }
}

/// A file written through a buffer and synced on close.
struct Sink {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Sink {
    fn create(path: &Path) -> Result<Sink> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Sink {
            path: path.to_path_buf(),
            w: BufWriter::new(f),
        })
    }

    /// Appends a copy of `from` (streamed).
    fn copy_from(&mut self, from: &Path) -> Result<()> {
        let mut f = File::open(from).map_err(|e| Error::io(from, e))?;
        std::io::copy(&mut f, &mut self.w).map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }

    fn line(&mut self, v: &Value) -> Result<()> {
        let s = serde_json::to_string(v).map_err(|e| bad(&self.path, format!("json: {e}")))?;
        writeln!(self.w, "{s}").map_err(|e| Error::io(&self.path, e))
    }

    fn close(self) -> Result<()> {
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

/// Hard-links (or copies, across file systems) every file of `from` into `to`, except the
/// metadata files the layout rewrites.
fn link_tree(from: &Path, to: &Path, rel: &Path) -> Result<()> {
    let dir = from.join(rel);
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        let r = rel.join(e.file_name());
        let ft = e.file_type().map_err(|er| Error::io(e.path(), er))?;
        if ft.is_dir() {
            link_tree(from, to, &r)?;
        } else if !r.starts_with("meta") {
            let dst = to.join(&r);
            if let Some(d) = dst.parent() {
                std::fs::create_dir_all(d).map_err(|er| Error::io(d, er))?;
            }
            if std::fs::hard_link(e.path(), &dst).is_err() {
                std::fs::copy(e.path(), &dst).map_err(|er| Error::io(&dst, er))?;
            }
        }
    }
    Ok(())
}

/// The open v3.0 data file rows are taken from.
struct DataCursor {
    file: (u64, u64),
    /// The file's schema with its key-value metadata (`huggingface`), which batches lack.
    schema: arrow::datatypes::SchemaRef,
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    pending: Option<RecordBatch>,
}

impl DataCursor {
    fn open(root: &Path, file: (u64, u64), batch_rows: usize) -> Result<DataCursor> {
        let path = root.join(data_file_path(file.0 as usize, file.1 as usize));
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(Error::parquet(&path))?;
        let schema = v21_schema(builder.schema());
        let reader = builder
            .with_batch_size(batch_rows)
            .build()
            .map_err(Error::parquet(&path))?;
        Ok(DataCursor {
            file,
            schema,
            path,
            reader,
            pending: None,
        })
    }

    /// Up to `max` next rows (`None` at the end of the file).
    fn take(&mut self, max: usize) -> Result<Option<RecordBatch>> {
        let b = match self.pending.take() {
            Some(b) => b,
            None => match self.reader.next() {
                Some(b) => b.map_err(Error::arrow(&self.path))?,
                None => return Ok(None),
            },
        };
        if b.num_rows() > max {
            self.pending = Some(b.slice(max, b.num_rows() - max));
            return Ok(Some(b.slice(0, max)));
        }
        Ok(Some(b))
    }
}

/// The v3.0 file's schema with its `huggingface` metadata in the vocabulary of `datasets` 3.x
/// (what lerobot 0.3.3 pins): fixed-length vectors as `Sequence`, which `datasets` 4 calls
/// `List` (3.x fails with "Feature type 'List' not found").
fn v21_schema(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    fn rename(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.get("_type").is_some_and(|t| t == "List") && m.contains_key("length") {
                    m.insert("_type".into(), json!("Sequence"));
                }
                m.values_mut().for_each(rename);
            }
            Value::Array(a) => a.iter_mut().for_each(rename),
            _ => {}
        }
    }
    let md: std::collections::BTreeMap<String, String> = schema
        .metadata()
        .iter()
        .map(|(k, v)| {
            let v = match serde_json::from_str::<Value>(v) {
                Ok(mut j) if k == "huggingface" => {
                    rename(&mut j);
                    j.to_string()
                }
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        schema.fields().clone(),
        md,
    ))
}

fn writer_props(has_images: bool) -> WriterProperties {
    WriterProperties::builder()
        .set_write_batch_size(if has_images { 1 } else { 1024 })
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

/// Replaces `episode_index`, `index` and `task_index` of a batch of one episode's rows.
fn renumber(
    schema: &arrow::datatypes::SchemaRef,
    b: &RecordBatch,
    episode: u64,
    index_offset: u64,
    task_map: &[u64],
    path: &Path,
) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    let n = b.num_rows();
    for (i, f) in schema.fields().iter().enumerate() {
        let old = || {
            cols[i]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| bad(path, format!("column {} is not int64", f.name())))
        };
        let new: Option<ArrayRef> = match f.name().as_str() {
            "episode_index" => Some(Arc::new(Int64Array::from(vec![episode as i64; n]))),
            "index" => {
                let o = old()?;
                Some(Arc::new(Int64Array::from_iter_values(
                    o.values().iter().map(|v| v + index_offset as i64),
                )))
            }
            "task_index" => {
                let o = old()?;
                let mut v = Vec::with_capacity(n);
                for t in o.values() {
                    let m = usize::try_from(*t)
                        .ok()
                        .and_then(|t| task_map.get(t))
                        .ok_or_else(|| bad(path, format!("task_index {t} has no task")))?;
                    v.push(*m as i64);
                }
                Some(Arc::new(Int64Array::from(v)))
            }
            _ => None,
        };
        if let Some(a) = new {
            cols[i] = a;
        }
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(Error::arrow(path))
}

/// Lays the v3.0 dataset at `src` out as v2.1 in `staging` (which must not exist), after the
/// episodes of `base` when given (its files hard-linked, the new episodes renumbered after
/// its own, tasks merged by first appearance). `log` is the conversion log to store (None: the
/// source's, if any).
pub(crate) fn to_v21(
    src: &Path,
    staging: &Path,
    base: Option<&V21Base>,
    log: Option<String>,
    opts: &LayoutOptions,
) -> Result<LayoutSummary> {
    let v30 = V30::open(src)?;
    let fps = u64::from(v30.info.fps);
    if fps == 0 {
        return Err(bad(&src.join("meta/info.json"), "fps missing"));
    }
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    }
    std::fs::create_dir_all(staging.join("meta")).map_err(|e| Error::io(staging, e))?;
    if let Some(b) = base {
        if b.info.features != v30.info.features || b.info.fps != v30.info.fps {
            return Err(bad(
                &b.root,
                "its features or fps differ from the new episodes'; a dataset holds one conversion",
            ));
        }
        link_tree(&b.root, staging, Path::new(""))?;
    }
    let (ep0, frames0) = base.map_or((0, 0), |b| (b.episodes, b.frames));
    let mut tasks: Vec<String> = base.map(|b| b.tasks.clone()).unwrap_or_default();
    let task_map: Vec<u64> = v30
        .tasks
        .iter()
        .map(|t| match tasks.iter().position(|x| x == t) {
            Some(i) => i as u64,
            None => {
                tasks.push(t.clone());
                (tasks.len() - 1) as u64
            }
        })
        .collect();

    let meta = staging.join("meta");
    let mut episodes_out = Sink::create(&meta.join("episodes.jsonl"))?;
    let mut stats_out = Sink::create(&meta.join("episodes_stats.jsonl"))?;
    let mut aggs: Vec<StatsAggregate> = vec![StatsAggregate::default(); v30.stats_features.len()];
    if let Some(b) = base {
        episodes_out.copy_from(&b.root.join("meta/episodes.jsonl"))?;
        let p = b.root.join("meta/episodes_stats.jsonl");
        stats_out.copy_from(&p)?;
        for_each_line(&p, |v, n| {
            for ((name, image), agg) in v30.stats_features.iter().zip(&mut aggs) {
                let s = stats_from_json(&v["stats"][name], *image).ok_or_else(|| {
                    bad(
                        &p,
                        format!("line {n}: stats of {name} missing or incomplete"),
                    )
                })?;
                agg.add(&s);
            }
            Ok(())
        })?;
    }

    let has_images = v30.info.features.iter().any(|(_, f)| f.dtype == "image");
    let batch_rows = if has_images {
        IMAGE_BATCH_ROWS
    } else {
        VECTOR_BATCH_ROWS
    };
    let props = writer_props(has_images);
    let mut cursor: Option<DataCursor> = None;
    let mut frames = frames0;
    let mut new_eps = 0u64;
    v30.for_each_episode(|e: Episode| {
        let new_ep = ep0 + e.index;
        let file = (e.data_chunk, e.data_file);
        if cursor.as_ref().is_none_or(|c| c.file != file) {
            cursor = Some(DataCursor::open(src, file, batch_rows)?);
        }
        let c = cursor.as_mut().expect("opened above");
        let out_path = staging.join(v21_data_path(new_ep));
        if let Some(d) = out_path.parent() {
            std::fs::create_dir_all(d).map_err(|er| Error::io(d, er))?;
        }
        let f = File::create(&out_path).map_err(|er| Error::io(&out_path, er))?;
        let mut w: Option<ArrowWriter<File>> = None;
        let mut left = e.length as usize;
        // Rows go to the writer in batches of `batch_rows` counted from the episode's start,
        // so the output bytes depend on the episode alone, not on where it sat in its source
        // file (appending one bag at a time then equals one run).
        let mut pieces: Vec<RecordBatch> = Vec::new();
        let mut held = 0usize;
        while left > 0 {
            let b = c.take(left.min(batch_rows - held))?.ok_or_else(|| {
                bad(
                    &c.path,
                    format!("episode {}: the file ends {left} rows early", e.index),
                )
            })?;
            check_episode_column(&b, e.index, &c.path)?;
            left -= b.num_rows();
            held += b.num_rows();
            pieces.push(b);
            if held < batch_rows && left > 0 {
                continue;
            }
            let b = concat_batches(&pieces[0].schema(), &pieces)
                .map_err(|er| bad(&c.path, format!("arrow: {er}")))?;
            pieces.clear();
            held = 0;
            let b = renumber(&c.schema, &b, new_ep, frames0, &task_map, &c.path)?;
            if w.is_none() {
                w = Some(
                    ArrowWriter::try_new(
                        f.try_clone().map_err(|er| Error::io(&out_path, er))?,
                        b.schema(),
                        Some(props.clone()),
                    )
                    .map_err(|er| bad(&out_path, format!("parquet: {er}")))?,
                );
            }
            let wr = w.as_mut().expect("created above");
            wr.write(&b)
                .map_err(|er| bad(&out_path, format!("parquet: {er}")))?;
            if wr.in_progress_size() >= opts.row_group_bytes {
                wr.flush()
                    .map_err(|er| bad(&out_path, format!("parquet: {er}")))?;
            }
        }
        let w = w.ok_or_else(|| bad(&c.path, format!("episode {} has no rows", e.index)))?;
        w.close()
            .map_err(|er| bad(&out_path, format!("parquet: {er}")))?;
        f.sync_all().map_err(|er| Error::io(&out_path, er))?;
        for (key, v) in v30.video_keys.iter().zip(&e.videos) {
            cut_video(src, staging, key, v, new_ep, e.length, fps, opts)?;
        }
        let tasks_of: Vec<&str> = e.tasks.iter().map(|t| t.as_str()).collect();
        episodes_out.line(&json!({
            "episode_index": new_ep,
            "tasks": tasks_of,
            "length": e.length,
        }))?;
        // The renumbered default columns' statistics, computed as the writer computes them
        // (so an appended episode's equal the ones of the same episode converted in one run).
        let from = frames;
        let task = e
            .tasks
            .first()
            .and_then(|t| v30.tasks.iter().position(|x| x == t))
            .and_then(|k| task_map.get(k))
            .copied()
            .ok_or_else(|| {
                bad(
                    src,
                    format!("episode {}: task not in tasks.parquet", e.index),
                )
            })?;
        let mut st = serde_json::Map::new();
        for ((name, _), (s, agg)) in v30.stats_features.iter().zip(e.stats.iter().zip(&mut aggs)) {
            let n = e.length;
            let renumbered = match name.as_str() {
                "episode_index" => monotone_column_stats(n, |_| new_ep as f64),
                "index" => monotone_column_stats(n, |i| (from + i) as f64),
                "task_index" => monotone_column_stats(n, |_| task as f64),
                _ => None,
            };
            let s = renumbered.as_ref().unwrap_or(s);
            st.insert(name.clone(), s.to_json());
            agg.add(s);
        }
        stats_out.line(&json!({"episode_index": new_ep, "stats": Value::Object(st)}))?;
        frames += e.length;
        new_eps += 1;
        Ok(())
    })?;
    episodes_out.close()?;
    stats_out.close()?;

    let mut t = Sink::create(&meta.join("tasks.jsonl"))?;
    for (i, task) in tasks.iter().enumerate() {
        t.line(&json!({"task_index": i, "task": task}))?;
    }
    t.close()?;

    let mut stats = serde_json::Map::new();
    for ((name, _), agg) in v30.stats_features.iter().zip(&aggs) {
        if let Some(s) = agg.finish() {
            stats.insert(name.clone(), s.to_json());
        }
    }
    write_text(&meta.join("stats.json"), &pretty4(&Value::Object(stats)))?;

    let episodes = ep0 + new_eps;
    let videos = episodes * v30.video_keys.len() as u64;
    let info = V21Info {
        codebase_version: V21.into(),
        robot_type: v30.info.robot_type.clone(),
        total_episodes: episodes,
        total_frames: frames,
        total_tasks: tasks.len() as u64,
        total_videos: videos,
        total_chunks: episodes.div_ceil(V21_CHUNKS_SIZE),
        chunks_size: V21_CHUNKS_SIZE,
        fps: v30.info.fps,
        splits: BTreeMap::from([("train".into(), format!("0:{episodes}"))]),
        data_path: V21_DATA_PATH.into(),
        video_path: (!v30.video_keys.is_empty()).then(|| V21_VIDEO_PATH.into()),
        features: v30.info.features.clone(),
    };
    write_text(&meta.join("info.json"), &info.to_text())?;

    let manifest = crate::dataset::MANIFEST_NAME;
    let log = match log {
        Some(l) => Some(l),
        None => std::fs::read_to_string(src.join("meta").join(manifest)).ok(),
    };
    if let Some(l) = log {
        write_text(&meta.join(manifest), &l)?;
    }
    sync_dir(staging);
    Ok(LayoutSummary {
        episodes,
        frames,
        tasks: tasks.len() as u64,
        videos,
    })
}

/// Checks that a batch belongs to the episode it is taken for.
fn check_episode_column(b: &RecordBatch, episode: u64, path: &Path) -> Result<()> {
    let col = b
        .column_by_name("episode_index")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| bad(path, "episode_index column missing"))?;
    if col.values().iter().any(|v| *v != episode as i64) {
        return Err(bad(
            path,
            format!("rows of episode {episode} are not where the episodes parquet says"),
        ));
    }
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    let mut s = Sink::create(path)?;
    s.w.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    s.close()
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Cuts one episode's frames of one camera out of a v3.0 video file by stream copy: the
/// episode starts on a keyframe, so seeking a quarter frame past its start lands on it;
/// `length` packets are copied and their timestamps rewritten to `N · 512` ticks at timescale
/// `fps · 512` (frame i at i/fps exactly).
#[allow(clippy::too_many_arguments)]
fn cut_video(
    src: &Path,
    staging: &Path,
    key: &str,
    v: &super::v30::VideoRef,
    episode: u64,
    length: u64,
    fps: u64,
    opts: &LayoutOptions,
) -> Result<()> {
    let from = src.join(video_file_path(key, v.chunk as usize, v.file as usize));
    let to = staging.join(v21_video_path(key, episode));
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let seek = v.from_timestamp + 0.25 / fps as f64;
    let out = Command::new(&opts.ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-ss"])
        .arg(format!("{seek:.6}"))
        .arg("-i")
        .arg(&from)
        .args(["-map", "0:v:0", "-frames:v"])
        .arg(length.to_string())
        // No `btrt` box: its bitrates come from the source file (the whole v3.0 file), so the
        // same episode cut from another file would differ in those bytes.
        .args(["-c", "copy", "-write_btrt", "0", "-bsf:v"])
        .arg(format!("setts=ts=N*{TICKS_PER_FRAME}"))
        .arg("-video_track_timescale")
        .arg((fps * TICKS_PER_FRAME).to_string())
        .args(["-f", "mp4", "-y"])
        .arg(&to)
        .output()
        .map_err(|e| Error::Video {
            key: key.to_string(),
            what: format!("cannot run {}: {e}; {INSTALL_HINT}", opts.ffmpeg.display()),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Video {
            key: key.to_string(),
            what: format!(
                "cutting episode {episode} out of {} failed: {}",
                from.display(),
                err.trim()
            ),
        });
    }
    Ok(())
}

/// Renames `staging` onto `out`: the previous dataset (if any) is first renamed to
/// `<out>.v21-old` and removed last, so a kill at any point leaves either dataset whole
/// ([`recover`] puts the old one back if the new one was not in place yet).
pub(crate) fn publish(staging: &Path, out: &Path) -> Result<()> {
    let old = sibling(out, OLD_SUFFIX);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if out.exists() {
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(staging, out).map_err(|e| Error::io(staging, e))?;
    if let Some(p) = out.parent() {
        sync_dir(if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        });
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Undoes what a killed layout left: the old dataset renamed back when the new one never
/// arrived, a stale staging directory removed.
pub(crate) fn recover(out: &Path) -> Result<()> {
    let old = sibling(out, OLD_SUFFIX);
    if old.exists() {
        if out.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            std::fs::rename(&old, out).map_err(|e| Error::io(&old, e))?;
        }
    }
    let staging = sibling(out, STAGING_SUFFIX);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    Ok(())
}
