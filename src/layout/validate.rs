//! `validate` for v2.1 datasets: every rule of `docs/lerobot-v21.md` (what lerobot 0.3.3's
//! reader enforces or silently relies on), listed as problems. Only the five default columns
//! are read row by row (in batches); videos are probed with ffprobe (packet count and every
//! packet's time against `i / fps` within 1e-4 s) when it is installed.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, Float32Array, Int64Array};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::v21::for_each_line;
use super::{V21, V21_DATA_PATH, V21_VIDEO_PATH, v21_data_path, v21_video_path};
use crate::dataset::DEFAULT_COLUMNS;
use crate::error::{Error, Result};

/// Largest allowed distance of a timestamp from `frame_index / fps` (lerobot's `tolerance_s`).
const TOLERANCE_S: f64 = 1e-4;
/// Problems listed per kind before the rest are only counted: 5.
const MAX_PER_KIND: usize = 5;
/// Rows decoded per batch while scanning the default columns: 8192.
const SCAN_BATCH_ROWS: usize = 8192;

struct Problems {
    list: Vec<String>,
    per_kind: std::collections::HashMap<&'static str, usize>,
}

impl Problems {
    fn add(&mut self, kind: &'static str, msg: impl Into<String>) {
        let n = self.per_kind.entry(kind).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.list.push(msg.into());
        } else if *n == MAX_PER_KIND + 1 {
            self.list.push(format!("(more {kind} problems not listed)"));
        }
    }
}

/// `meta/info.json` as plain JSON: a validator must report each broken key, where
/// [`super::V21Info`] would refuse the whole file.
fn read_info(dataset: &Path) -> Result<Value> {
    let p = dataset.join("meta/info.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Dataset {
        path: p,
        what: format!("json: {e}"),
    })
}

/// Names of the video features an `info.json` declares, in declaration order.
fn video_keys(info: &Value) -> Vec<String> {
    info["features"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, f)| f["dtype"] == "video")
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One line of `episodes.jsonl`.
struct Ep {
    length: u64,
    tasks: Vec<String>,
}

/// Checks the v2.1 dataset at `dataset`; returns every problem found (empty: valid).
pub fn validate_v21(dataset: &Path) -> Result<Vec<String>> {
    let md = std::fs::metadata(dataset).map_err(|e| Error::io(dataset, e))?;
    if !md.is_dir() {
        return Err(Error::Dataset {
            path: dataset.to_path_buf(),
            what: "not a directory".into(),
        });
    }
    let mut p = Problems {
        list: Vec::new(),
        per_kind: Default::default(),
    };
    let info = match read_info(dataset) {
        Ok(i) => i,
        Err(e) => {
            p.add("info", format!("meta/info.json: {e}"));
            return Ok(p.list);
        }
    };
    check_info(&info, &mut p);
    let fps = info["fps"].as_u64().unwrap_or(0);
    let features = info["features"].as_object().cloned().unwrap_or_default();
    let video_keys = video_keys(&info);

    // tasks.jsonl
    let mut tasks: Vec<(u64, String)> = Vec::new();
    let tp = dataset.join("meta/tasks.jsonl");
    if let Err(e) = for_each_line(&tp, |v, n| {
        match (v["task_index"].as_u64(), v["task"].as_str()) {
            (Some(i), Some(t)) => tasks.push((i, t.to_string())),
            _ => p.add(
                "tasks",
                format!("meta/tasks.jsonl line {n}: task_index or task missing"),
            ),
        }
        Ok(())
    }) {
        p.add("tasks", format!("meta/tasks.jsonl: {e}"));
    }
    tasks.sort();
    if tasks.iter().enumerate().any(|(k, (i, _))| *i != k as u64) {
        p.add(
            "tasks",
            "meta/tasks.jsonl: task_index does not run 0, 1, 2, … without gaps",
        );
    }
    let task_set: HashSet<&str> = tasks.iter().map(|(_, t)| t.as_str()).collect();
    if task_set.len() != tasks.len() {
        p.add("tasks", "meta/tasks.jsonl: a task is listed twice");
    }
    if info["total_tasks"].as_u64() != Some(tasks.len() as u64) {
        p.add(
            "info",
            format!(
                "info.json total_tasks {} but meta/tasks.jsonl has {}",
                info["total_tasks"],
                tasks.len()
            ),
        );
    }

    // episodes.jsonl
    let mut eps: Vec<Ep> = Vec::new();
    let ep_path = dataset.join("meta/episodes.jsonl");
    if let Err(e) = for_each_line(&ep_path, |v, n| {
        let i = v["episode_index"].as_u64();
        if i != Some(eps.len() as u64) {
            p.add(
                "episodes",
                format!(
                    "meta/episodes.jsonl line {n}: episode_index {}, expected {} (episodes must run 0, 1, 2, … in order)",
                    v["episode_index"],
                    eps.len()
                ),
            );
        }
        let length = v["length"].as_u64().unwrap_or(0);
        if length == 0 {
            p.add(
                "episodes",
                format!("meta/episodes.jsonl line {n}: length missing or 0"),
            );
        }
        let ts: Vec<String> = v["tasks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if ts.is_empty() {
            p.add(
                "episodes",
                format!("meta/episodes.jsonl line {n}: tasks missing or empty"),
            );
        }
        for t in &ts {
            if !task_set.contains(t.as_str()) {
                p.add(
                    "episodes",
                    format!("meta/episodes.jsonl line {n}: task {t:?} is not in tasks.jsonl"),
                );
            }
        }
        eps.push(Ep { length, tasks: ts });
        Ok(())
    }) {
        p.add("episodes", format!("meta/episodes.jsonl: {e}"));
    }
    let n_eps = eps.len() as u64;
    let frames: u64 = eps.iter().map(|e| e.length).sum();
    if info["total_episodes"].as_u64() != Some(n_eps) {
        p.add(
            "info",
            format!(
                "info.json total_episodes {} but episodes.jsonl has {n_eps}",
                info["total_episodes"]
            ),
        );
    }
    if info["total_frames"].as_u64() != Some(frames) {
        p.add(
            "info",
            format!(
                "info.json total_frames {} but the episodes' lengths add up to {frames}",
                info["total_frames"]
            ),
        );
    }
    let chunks_size = info["chunks_size"].as_u64().unwrap_or(0).max(1);
    if info["total_chunks"].as_u64() != Some(n_eps.div_ceil(chunks_size)) {
        p.add(
            "info",
            format!(
                "info.json total_chunks {}, expected {} ({n_eps} episodes, {chunks_size} per chunk)",
                info["total_chunks"],
                n_eps.div_ceil(chunks_size)
            ),
        );
    }
    if info["total_videos"].as_u64() != Some(n_eps * video_keys.len() as u64) {
        p.add(
            "info",
            format!(
                "info.json total_videos {}, expected {} ({n_eps} episodes × {} video features)",
                info["total_videos"],
                n_eps * video_keys.len() as u64,
                video_keys.len()
            ),
        );
    }
    if info["splits"]["train"].as_str() != Some(format!("0:{n_eps}").as_str()) {
        p.add(
            "info",
            format!(
                "info.json splits.train {}, expected \"0:{n_eps}\"",
                info["splits"]["train"]
            ),
        );
    }

    check_episode_stats(dataset, &features, &eps, &mut p);

    // Data files.
    let mut offset = 0u64;
    let mut expected_files = BTreeSet::new();
    for (i, e) in eps.iter().enumerate() {
        let rel = v21_data_path(i as u64);
        expected_files.insert(rel.clone());
        check_data_file(
            dataset, &rel, i as u64, e, offset, fps, &features, &tasks, &mut p,
        );
        offset += e.length;
    }
    for f in files_under(&dataset.join("data"), "parquet") {
        let rel = format!("data/{f}");
        if !expected_files.contains(&rel) {
            p.add(
                "files",
                format!(
                    "{rel}: a data file no episode names (lerobot loads every parquet under data/)"
                ),
            );
        }
    }

    // Videos.
    let mut expected_videos = BTreeSet::new();
    let ffprobe = which_ffprobe();
    for (i, e) in eps.iter().enumerate() {
        for k in &video_keys {
            let rel = v21_video_path(k, i as u64);
            expected_videos.insert(rel.clone());
            let path = dataset.join(&rel);
            if !path.is_file() {
                p.add("videos", format!("{rel}: missing"));
                continue;
            }
            if let Some(ff) = &ffprobe {
                check_video(ff, &path, &rel, e.length, fps, &mut p);
            }
        }
    }
    for f in files_under(&dataset.join("videos"), "mp4") {
        let rel = format!("videos/{f}");
        if !expected_videos.contains(&rel) {
            p.add("files", format!("{rel}: a video no episode names"));
        }
    }
    Ok(p.list)
}

fn check_info(info: &Value, p: &mut Problems) {
    if info["codebase_version"] != V21 {
        p.add(
            "info",
            format!(
                "info.json codebase_version {}, expected \"{V21}\"",
                info["codebase_version"]
            ),
        );
    }
    for k in [
        "robot_type",
        "total_episodes",
        "total_frames",
        "total_tasks",
        "total_videos",
        "total_chunks",
        "chunks_size",
        "fps",
        "splits",
        "data_path",
        "video_path",
        "features",
    ] {
        if info.get(k).is_none() {
            p.add(
                "info",
                format!("info.json: key {k} missing (lerobot 0.3.3 reads it)"),
            );
        }
    }
    if info["fps"].as_u64().is_none_or(|f| f == 0) {
        p.add("info", "info.json fps must be a positive integer");
    }
    if info["chunks_size"].as_u64() != Some(super::V21_CHUNKS_SIZE) {
        p.add(
            "info",
            format!(
                "info.json chunks_size {}, expected {}",
                info["chunks_size"],
                super::V21_CHUNKS_SIZE
            ),
        );
    }
    if info["data_path"] != V21_DATA_PATH {
        p.add(
            "info",
            format!(
                "info.json data_path {}, expected \"{V21_DATA_PATH}\"",
                info["data_path"]
            ),
        );
    }
    let videos = !video_keys(info).is_empty();
    match (&info["video_path"], videos) {
        (Value::Null, false) => {}
        (v, true) if v == V21_VIDEO_PATH => {}
        (v, _) => p.add(
            "info",
            format!(
                "info.json video_path {v}, expected {}",
                if videos {
                    format!("\"{V21_VIDEO_PATH}\"")
                } else {
                    "null (no video feature)".into()
                }
            ),
        ),
    }
    let Some(features) = info["features"].as_object() else {
        p.add("info", "info.json features is not an object");
        return;
    };
    let defaults = [
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ];
    for (k, dtype) in defaults {
        if features.get(k).and_then(|f| f["dtype"].as_str()) != Some(dtype) {
            p.add(
                "info",
                format!("info.json features: {k} missing or not {dtype}"),
            );
        }
    }
    for (k, f) in features {
        if k.contains('/') {
            p.add("info", format!("feature {k}: names must not contain '/'"));
        }
        let shape_ok = f["shape"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|d| d.as_u64().is_some()));
        if !shape_ok {
            p.add(
                "info",
                format!("feature {k}: shape missing or not a list of integers"),
            );
        }
        let visual = f["dtype"] == "image" || f["dtype"] == "video";
        if visual && f["shape"].as_array().is_none_or(|s| s.len() != 3) {
            p.add(
                "info",
                format!("feature {k}: an image/video feature needs a 3-dimensional shape"),
            );
        }
        if f["dtype"] == "video" && f["info"].is_null() {
            p.add(
                "info",
                format!("feature {k}: a video feature without its info block"),
            );
        }
    }
}

/// `episodes_stats.jsonl`: one line per episode, in order, every feature with min/max/mean/std
/// (arrays of at least one dimension) and `count` of shape `[1]`; `[3, 1, 1]` for features whose
/// name holds "image" (lerobot's `_assert_type_and_shape`) and for every visual feature.
fn check_episode_stats(
    dataset: &Path,
    features: &serde_json::Map<String, Value>,
    eps: &[Ep],
    p: &mut Problems,
) {
    let path = dataset.join("meta/episodes_stats.jsonl");
    let mut k = 0u64;
    let r = for_each_line(&path, |v, n| {
        if v["episode_index"].as_u64() != Some(k) {
            p.add(
                "stats",
                format!(
                    "meta/episodes_stats.jsonl line {n}: episode_index {}, expected {k}",
                    v["episode_index"]
                ),
            );
        }
        for (name, f) in features {
            let s = &v["stats"][name];
            if !s.is_object() {
                p.add(
                    "stats",
                    format!("meta/episodes_stats.jsonl line {n}: no stats for {name}"),
                );
                continue;
            }
            let visual = f["dtype"] == "image" || f["dtype"] == "video";
            let len = f["shape"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_u64)
                .unwrap_or(1);
            for key in ["min", "max", "mean", "std"] {
                let Some(val) = s.get(key) else {
                    p.add(
                        "stats",
                        format!("meta/episodes_stats.jsonl line {n}: {name}.{key} missing"),
                    );
                    continue;
                };
                let ok = if visual || name.contains("image") {
                    val.as_array().is_some_and(|a| {
                        a.len() == 3
                            && a.iter().all(|c| {
                                c.as_array().is_some_and(|c| {
                                    c.len() == 1
                                        && c[0]
                                            .as_array()
                                            .is_some_and(|x| x.len() == 1 && x[0].is_number())
                                })
                            })
                    })
                } else {
                    val.as_array()
                        .is_some_and(|a| a.len() as u64 == len && a.iter().all(Value::is_number))
                };
                if !ok {
                    p.add(
                        "stats",
                        format!(
                            "meta/episodes_stats.jsonl line {n}: {name}.{key} must have shape {}",
                            if visual || name.contains("image") {
                                "[3, 1, 1]".to_string()
                            } else {
                                format!("[{len}]")
                            }
                        ),
                    );
                }
            }
            let count = s["count"]
                .as_array()
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0].as_u64());
            match count {
                None => p.add(
                    "stats",
                    format!("meta/episodes_stats.jsonl line {n}: {name}.count must be [n]"),
                ),
                Some(c) if !visual => {
                    if let Some(e) = eps.get(k as usize)
                        && c != e.length
                    {
                        p.add("stats", format!("meta/episodes_stats.jsonl line {n}: {name}.count {c}, but the episode has {} frames", e.length));
                    }
                }
                Some(_) => {}
            }
        }
        k += 1;
        Ok(())
    });
    if let Err(e) = r {
        p.add("stats", format!("meta/episodes_stats.jsonl: {e}"));
    }
    if k != eps.len() as u64 {
        p.add(
            "stats",
            format!(
                "meta/episodes_stats.jsonl has {k} lines for {} episodes",
                eps.len()
            ),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn check_data_file(
    dataset: &Path,
    rel: &str,
    episode: u64,
    e: &Ep,
    offset: u64,
    fps: u64,
    features: &serde_json::Map<String, Value>,
    tasks: &[(u64, String)],
    p: &mut Problems,
) {
    let path = dataset.join(rel);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(err) => {
            p.add("data", format!("{rel}: {err}"));
            return;
        }
    };
    let builder = match ParquetRecordBatchReaderBuilder::try_new(f) {
        Ok(b) => b,
        Err(err) => {
            p.add("data", format!("{rel}: not a readable parquet file: {err}"));
            return;
        }
    };
    let schema = builder.schema().clone();
    match schema.metadata().get("huggingface") {
        None => p.add("data", format!("{rel}: no `huggingface` schema metadata (images would load as structs)")),
        Some(hf) if hf.contains("\"List\"") => p.add(
            "data",
            format!("{rel}: `huggingface` metadata names the type List (datasets 4); lerobot 0.3.3's datasets 3.x only knows Sequence"),
        ),
        Some(_) => {}
    }
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for (k, f) in features {
        let video = f["dtype"] == "video";
        if video && cols.contains(k) {
            p.add(
                "data",
                format!("{rel}: has a column for the video feature {k}"),
            );
        }
        if !video && !cols.contains(k) {
            p.add("data", format!("{rel}: column {k} missing"));
        }
    }
    for c in &cols {
        if !features.contains_key(c) {
            p.add(
                "data",
                format!("{rel}: column {c} is not a feature of info.json"),
            );
        }
    }
    let roots: Vec<usize> = DEFAULT_COLUMNS
        .iter()
        .filter_map(|n| cols.iter().position(|c| c == n))
        .collect();
    if roots.len() != DEFAULT_COLUMNS.len() {
        return;
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = match builder
        .with_projection(mask)
        .with_batch_size(SCAN_BATCH_ROWS)
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            p.add("data", format!("{rel}: {err}"));
            return;
        }
    };
    let allowed: HashSet<u64> = tasks
        .iter()
        .filter(|(_, t)| e.tasks.contains(t))
        .map(|(i, _)| *i)
        .collect();
    let step = 1.0 / fps.max(1) as f64;
    let mut row = 0u64;
    for b in reader {
        let b = match b {
            Ok(b) => b,
            Err(err) => {
                p.add("data", format!("{rel}: {err}"));
                return;
            }
        };
        let int = |n: &str| {
            b.column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .cloned()
        };
        let ts = b
            .column_by_name("timestamp")
            .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
            .cloned();
        let (Some(ts), Some(fi), Some(ei), Some(ix), Some(ti)) = (
            ts,
            int("frame_index"),
            int("episode_index"),
            int("index"),
            int("task_index"),
        ) else {
            p.add("data", format!("{rel}: default columns of the wrong type"));
            return;
        };
        for r in 0..b.num_rows() {
            let k = row + r as u64;
            if ei.value(r) != episode as i64 {
                p.add(
                    "data",
                    format!(
                        "{rel} row {k}: episode_index {}, expected {episode}",
                        ei.value(r)
                    ),
                );
            }
            if fi.value(r) != k as i64 {
                p.add(
                    "data",
                    format!("{rel} row {k}: frame_index {}, expected {k}", fi.value(r)),
                );
            }
            if ix.value(r) != (offset + k) as i64 {
                p.add(
                    "data",
                    format!(
                        "{rel} row {k}: index {}, expected {} (global, contiguous)",
                        ix.value(r),
                        offset + k
                    ),
                );
            }
            let t = f64::from(ts.value(r));
            if (t - k as f64 * step).abs() > TOLERANCE_S {
                p.add(
                    "data",
                    format!(
                        "{rel} row {k}: timestamp {t}, expected {} ± {TOLERANCE_S} s",
                        k as f64 * step
                    ),
                );
            }
            if ti.is_null(r) || !allowed.contains(&(ti.value(r) as u64)) {
                p.add(
                    "data",
                    format!(
                        "{rel} row {k}: task_index {} is not one of the episode's tasks",
                        ti.value(r)
                    ),
                );
            }
        }
        row += b.num_rows() as u64;
    }
    if row != e.length {
        p.add(
            "data",
            format!("{rel}: {row} rows, episodes.jsonl says {}", e.length),
        );
    }
}

/// Relative paths of the files with extension `ext` under `dir`, recursively.
fn files_under(dir: &Path, ext: &str) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, ext: &str, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, ext, out);
            } else if p.extension().is_some_and(|x| x == ext)
                && let Ok(r) = p.strip_prefix(base)
            {
                out.push(r.display().to_string());
            }
        }
    }
    walk(dir, dir, ext, &mut out);
    out.sort();
    out
}

fn which_ffprobe() -> Option<std::path::PathBuf> {
    let ff: std::path::PathBuf =
        std::env::var_os("BAG2DATASET_FFPROBE").map_or_else(|| "ffprobe".into(), Into::into);
    Command::new(&ff)
        .arg("-version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ff)
}

/// Packet count equals the episode length and packet `i` is at `i / fps` (± 1e-4 s): what
/// lerobot's decoders check when they fetch a frame by its timestamp.
fn check_video(ffprobe: &Path, path: &Path, rel: &str, length: u64, fps: u64, p: &mut Problems) {
    let out = Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            p.add(
                "videos",
                format!(
                    "{rel}: ffprobe failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
            return;
        }
        Err(e) => {
            p.add("videos", format!("{rel}: cannot run ffprobe: {e}"));
            return;
        }
    };
    let mut pts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    if pts.len() as u64 != length {
        p.add(
            "videos",
            format!("{rel}: {} frames, the episode has {length}", pts.len()),
        );
        return;
    }
    pts.sort_by(f64::total_cmp);
    let step = 1.0 / fps.max(1) as f64;
    if let Some((i, t)) = pts
        .iter()
        .enumerate()
        .find(|(i, t)| (**t - *i as f64 * step).abs() > TOLERANCE_S)
    {
        p.add(
            "videos",
            format!(
                "{rel}: frame {i} at {t} s, expected {} ± {TOLERANCE_S} s",
                i as f64 * step
            ),
        );
    }
}
