//! Reads a dataset directory back and lists every rule of `docs/lerobot-v3.md` it breaks:
//! `info.json` keys and features, data file naming and footers, columns exactly equal to the
//! non-video features with the right Arrow types, the `huggingface` metadata, exact totals, a
//! contiguous global `index`, per-episode `frame_index`/`timestamp`, tasks with their pandas
//! index metadata, the episodes parquet, and `stats.json` keys and shapes.
//!
//! Only the five default columns are read row by row; image and vector payloads are checked by
//! type and by the footer's null counts, so validation of a large dataset stays cheap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, ListArray};
use arrow::datatypes::{DataType, Float32Type, Int64Type, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::info::{InfoJson, Names};
use super::schema::HUGGINGFACE_META_KEY;
use super::{CODEBASE_VERSION, DATA_PATH_TEMPLATE, DEFAULT_COLUMNS, STAT_KEYS};
use crate::error::{Error, Result};

/// Row-level problems reported per file and kind before the rest are summarised: 5.
pub const MAX_ROW_PROBLEMS: usize = 5;
/// Rows decoded per batch while scanning the default columns: 8192.
const SCAN_BATCH_ROWS: usize = 8192;
/// Largest allowed `|timestamp − frame_index/fps|`, in seconds (lerobot's tolerance): 1e-4.
pub const TIMESTAMP_TOLERANCE_S: f64 = 1e-4;

/// A feature as declared in `info.json`.
#[derive(Debug, Clone)]
struct Feat {
    name: String,
    dtype: String,
    shape: Vec<u64>,
}

impl Feat {
    fn is_visual(&self) -> bool {
        self.dtype == "image" || self.dtype == "video"
    }
}

/// Where and how long an episode is in the data files.
#[derive(Debug, Clone)]
struct EpisodeSpan {
    file: (u64, u64),
    from: i64,
    length: i64,
    task_index: i64,
}

struct Checker {
    root: PathBuf,
    problems: Vec<String>,
}

impl Checker {
    fn problem(&mut self, msg: impl Into<String>) {
        self.problems.push(msg.into());
    }
}

/// Lists every problem found in the dataset at `dataset` (empty = valid). Fails only when the
/// path is not a readable directory.
pub fn validate(dataset: &Path) -> Result<Vec<String>> {
    let md = std::fs::metadata(dataset).map_err(|e| Error::io(dataset, e))?;
    if !md.is_dir() {
        return Err(Error::Dataset {
            path: dataset.to_path_buf(),
            what: "not a directory".into(),
        });
    }
    let mut c = Checker {
        root: dataset.to_path_buf(),
        problems: Vec::new(),
    };
    let Some((info, features, totals)) = check_info(&mut c) else {
        return Ok(c.problems);
    };
    let spans = check_data(&mut c, &features, &totals);
    let tasks = check_tasks(&mut c, &totals);
    check_episodes(&mut c, &features, &totals, &spans, tasks.as_deref());
    check_stats(&mut c, &features, &totals);
    c.problems.extend(super::validate_video::check(dataset, &info));
    Ok(c.problems)
}

/// Totals and settings from `info.json`.
#[derive(Debug, Clone, Default)]
struct Totals {
    fps: f64,
    episodes: u64,
    frames: u64,
    tasks: u64,
    chunks_size: u64,
}

fn check_info(c: &mut Checker) -> Option<(InfoJson, Vec<Feat>, Totals)> {
    let f = "meta/info.json";
    let path = c.root.join(f);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            c.problem(format!("{f}: cannot read: {e}"));
            return None;
        }
    };
    // One reading of the file (`InfoJson`), shared with the writer and append: a key missing
    // or of the wrong type is a problem named by serde (key, line, column).
    let info = match InfoJson::parse(&path, &text) {
        Ok(i) => i,
        Err(e) => {
            c.problem(e.to_string());
            return None;
        }
    };
    if info.codebase_version != CODEBASE_VERSION {
        c.problem(format!(
            "{f}: codebase_version is {:?}, expected \"{CODEBASE_VERSION}\"",
            info.codebase_version
        ));
    }
    if info.fps == 0 {
        c.problem(format!("{f}: fps must be > 0"));
    }
    let totals = Totals {
        fps: f64::from(info.fps),
        episodes: info.total_episodes,
        frames: info.total_frames,
        tasks: info.total_tasks,
        chunks_size: info.chunks_size.max(1),
    };
    let want_split = format!("0:{}", totals.episodes);
    if info.splits.get("train") != Some(&want_split) {
        c.problem(format!(
            "{f}: splits.train is {:?}, expected \"{want_split}\"",
            info.splits.get("train")
        ));
    }
    if info.data_path != DATA_PATH_TEMPLATE {
        c.problem(format!(
            "{f}: data_path is {:?}, expected \"{DATA_PATH_TEMPLATE}\"",
            info.data_path
        ));
    }
    let mut feats = Vec::new();
    for (name, v) in &info.features {
        if v.dtype.is_empty() {
            c.problem(format!("{f}: feature {name}: missing dtype"));
        }
        if v.shape.is_empty() || v.shape.contains(&0) {
            c.problem(format!(
                "{f}: feature {name}: shape must be a list of positive integers, found {:?}",
                v.shape
            ));
            continue;
        }
        if name.contains('/') {
            c.problem(format!("{f}: feature {name}: names must not contain '/'"));
        }
        if v.names == Names::Absent {
            c.problem(format!(
                "{f}: feature {name}: missing \"names\" (null allowed)"
            ));
        }
        let feat = Feat {
            name: name.clone(),
            dtype: v.dtype.clone(),
            shape: v.shape.clone(),
        };
        if feat.is_visual() {
            if feat.shape.len() != 3 {
                c.problem(format!(
                    "{f}: feature {name}: {} shape must be [H, W, C], found {:?}",
                    feat.dtype, feat.shape
                ));
            }
            let hwc = ["height", "width", "channels"].map(String::from).to_vec();
            if v.names != Names::List(hwc) {
                c.problem(format!(
                    "{f}: feature {name}: names must be [\"height\", \"width\", \"channels\"], found {:?}",
                    v.names
                ));
            }
        } else if let Names::List(names) = &v.names
            && feat.shape.len() == 1
            && names.len() as u64 != feat.shape[0]
        {
            c.problem(format!(
                "{f}: feature {name}: {} names for shape {:?}",
                names.len(),
                feat.shape
            ));
        }
        feats.push(feat);
    }
    for d in DEFAULT_COLUMNS {
        let want = if d == "timestamp" { "float32" } else { "int64" };
        match feats.iter().find(|x| x.name == d) {
            None => c.problem(format!("{f}: default feature {d} is not declared")),
            Some(x) if x.dtype != want || x.shape != [1] => c.problem(format!(
                "{f}: feature {d} must be {want} shape [1], found {} {:?}",
                x.dtype, x.shape
            )),
            _ => {}
        }
    }
    let has_video = feats.iter().any(|x| x.dtype == "video");
    if !has_video && info.video_path.is_some() {
        c.problem(format!(
            "{f}: video_path must be null without video features"
        ));
    }
    if has_video && info.video_path.is_none() {
        c.problem(format!(
            "{f}: video_path must be a template with video features"
        ));
    }
    Some((info, feats, totals))
}

/// Arrow type expected for a declared numeric dtype.
fn numeric_type(dtype: &str) -> Option<DataType> {
    Some(match dtype {
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "int64" => DataType::Int64,
        "int32" => DataType::Int32,
        "int16" => DataType::Int16,
        "int8" => DataType::Int8,
        "uint8" => DataType::UInt8,
        "bool" => DataType::Boolean,
        "string" => DataType::Utf8,
        _ => return None,
    })
}

/// Why a column's Arrow type does not fit its declared feature, if it does not.
fn type_problem(feat: &Feat, dt: &DataType) -> Option<String> {
    if feat.dtype == "image" {
        let ok = match dt {
            DataType::Struct(fields) => {
                let bytes = fields.iter().find(|f| f.name() == "bytes");
                let path = fields.iter().find(|f| f.name() == "path");
                fields.len() == 2
                    && bytes.is_some_and(|f| {
                        matches!(f.data_type(), DataType::Binary | DataType::LargeBinary)
                    })
                    && path.is_some_and(|f| {
                        matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                    })
            }
            _ => false,
        };
        return (!ok).then(|| format!("is {dt}, expected struct<bytes: binary, path: string>"));
    }
    let Some(elem) = numeric_type(&feat.dtype) else {
        return Some(format!("declares unknown dtype {}", feat.dtype));
    };
    match feat.shape.as_slice() {
        [1] if *dt == elem || (elem == DataType::Utf8 && *dt == DataType::LargeUtf8) => None,
        [1] => Some(format!(
            "is {dt}, expected {elem} (shape [1] is a plain column)"
        )),
        [n] => match dt {
            DataType::FixedSizeList(item, len)
                if *len as u64 == *n && *item.data_type() == elem =>
            {
                None
            }
            DataType::FixedSizeList(item, len) => Some(format!(
                "is fixed_size_list<{}>[{len}], expected fixed_size_list<{elem}>[{n}]",
                item.data_type()
            )),
            DataType::List(_) | DataType::LargeList(_) => Some(format!(
                "is a variable-length list ({dt}); expected fixed_size_list<{elem}>[{n}]"
            )),
            _ => Some(format!("is {dt}, expected fixed_size_list<{elem}>[{n}]")),
        },
        _ => None, // multi-dimensional features are not checked further
    }
}

/// `chunk-XXX` / `file-YYY.parquet` → number.
fn parse_indexed(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (digits.len() >= 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Lists `<dir>/chunk-XXX/file-YYY.parquet` in (chunk, file) order, reporting strays and gaps.
fn list_files(c: &mut Checker, rel_dir: &str, chunks_size: u64) -> Vec<((u64, u64), PathBuf)> {
    let dir = c.root.join(rel_dir);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            c.problem(format!("{rel_dir}: cannot list: {e}"));
            return out;
        }
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(chunk) = parse_indexed(&name, "chunk-", "").filter(|_| e.path().is_dir()) else {
            c.problem(format!(
                "{rel_dir}/{name}: unexpected entry (want chunk-XXX folders)"
            ));
            continue;
        };
        let Ok(files) = std::fs::read_dir(e.path()) else {
            c.problem(format!("{rel_dir}/{name}: cannot list"));
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name().to_string_lossy().to_string();
            match parse_indexed(&fname, "file-", ".parquet") {
                Some(idx) if f.path().is_file() => out.push(((chunk, idx), f.path())),
                _ => c.problem(format!(
                    "{rel_dir}/{name}/{fname}: unexpected entry (want file-YYY.parquet)"
                )),
            }
        }
    }
    out.sort();
    // Files fill chunk folders in order: (0,0), (0,1), …, (0,chunks_size−1), (1,0), …
    let mut want = (0, 0);
    for ((ch, fi), _) in &out {
        if (*ch, *fi) != want {
            c.problem(format!(
                "{rel_dir}: expected chunk-{:03}/file-{:03}.parquet next, found chunk-{ch:03}/file-{fi:03}.parquet",
                want.0, want.1
            ));
        }
        want = if fi + 1 >= chunks_size {
            (ch + 1, 0)
        } else {
            (*ch, fi + 1)
        };
    }
    out
}

fn rel(c: &Checker, p: &Path) -> String {
    p.strip_prefix(&c.root)
        .unwrap_or(p)
        .to_string_lossy()
        .to_string()
}

fn open_parquet(c: &mut Checker, path: &Path) -> Option<ParquetRecordBatchReaderBuilder<File>> {
    let name = rel(c, path);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            c.problem(format!("{name}: cannot open: {e}"));
            return None;
        }
    };
    match ParquetRecordBatchReaderBuilder::try_new(file) {
        Ok(b) => Some(b),
        Err(e) => {
            c.problem(format!(
                "{name}: not a readable parquet file (missing footer?): {e}"
            ));
            None
        }
    }
}

/// Checks the data files; returns where each episode lives, in order of appearance.
fn check_data(c: &mut Checker, feats: &[Feat], t: &Totals) -> BTreeMap<i64, EpisodeSpan> {
    let files = list_files(c, "data", t.chunks_size);
    let expected_cols: Vec<&Feat> = feats.iter().filter(|f| f.dtype != "video").collect();
    let mut spans: BTreeMap<i64, EpisodeSpan> = BTreeMap::new();
    let mut next_index: i64 = 0;
    let mut rows_total: u64 = 0;
    let mut last_episode: Option<i64> = None;
    let mut frame_in_ep: i64 = 0;
    for (idx, path) in files {
        let name = rel(c, &path);
        let Some(builder) = open_parquet(c, &path) else {
            continue;
        };
        let schema: SchemaRef = builder.schema().clone();
        let cols: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for f in &expected_cols {
            match schema.field_with_name(&f.name) {
                Err(_) => c.problem(format!("{name}: column {} is missing", f.name)),
                Ok(field) => {
                    if let Some(p) = type_problem(f, field.data_type()) {
                        c.problem(format!("{name}: column {} {p}", f.name));
                    }
                }
            }
        }
        for col in &cols {
            if !expected_cols.iter().any(|f| f.name == *col) {
                c.problem(format!(
                    "{name}: column {col} is not a declared non-video feature (lerobot fails with CastError)"
                ));
            }
        }
        match schema.metadata().get(HUGGINGFACE_META_KEY) {
            None => c.problem(format!(
                "{name}: schema metadata key \"{HUGGINGFACE_META_KEY}\" is missing"
            )),
            Some(hf) => match serde_json::from_str::<Value>(hf) {
                Ok(v) => {
                    let hf_cols: HashSet<&str> = v["info"]["features"]
                        .as_object()
                        .map(|m| m.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    if hf_cols != cols {
                        c.problem(format!(
                            "{name}: \"{HUGGINGFACE_META_KEY}\" metadata features do not match the columns"
                        ));
                    }
                }
                Err(e) => c.problem(format!(
                    "{name}: \"{HUGGINGFACE_META_KEY}\" metadata is not JSON: {e}"
                )),
            },
        }
        // Nulls, from the footer's column statistics.
        let md = builder.metadata().clone();
        for rg in md.row_groups() {
            for col in rg.columns() {
                if let Some(n) = col.statistics().and_then(|s| s.null_count_opt())
                    && n > 0
                {
                    c.problem(format!(
                        "{name}: column {} has {n} nulls",
                        col.column_path().string()
                    ));
                }
            }
        }

        // Row-by-row scan of the default columns.
        let roots: Vec<usize> = DEFAULT_COLUMNS
            .iter()
            .filter_map(|d| schema.index_of(d).ok())
            .collect();
        if roots.len() != DEFAULT_COLUMNS.len() {
            rows_total += md.file_metadata().num_rows().max(0) as u64;
            continue;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = match builder
            .with_projection(mask)
            .with_batch_size(SCAN_BATCH_ROWS)
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                c.problem(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let mut first_row = true;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut report = |c: &mut Checker, kind: &'static str, msg: String| {
            let n = counts.entry(kind).or_default();
            *n += 1;
            if *n <= MAX_ROW_PROBLEMS {
                c.problem(format!("{name}: {msg}"));
            } else if *n == MAX_ROW_PROBLEMS + 1 {
                c.problem(format!("{name}: more {kind} problems not listed"));
            }
        };
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    c.problem(format!("{name}: read error: {e}"));
                    break;
                }
            };
            let get = |n: &str| batch.column_by_name(n);
            let (Some(ts), Some(fi), Some(ei), Some(ix), Some(ti)) = (
                get("timestamp").and_then(|a| a.as_primitive_opt::<Float32Type>()),
                get("frame_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("episode_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
                get("task_index").and_then(|a| a.as_primitive_opt::<Int64Type>()),
            ) else {
                break; // types already reported
            };
            for r in 0..batch.num_rows() {
                let (ts, fi, ep, ix, ti) = (
                    ts.value(r),
                    fi.value(r),
                    ei.value(r),
                    ix.value(r),
                    ti.value(r),
                );
                if ix != next_index {
                    report(
                        c,
                        "index",
                        format!("row {r}: index {ix}, expected {next_index} (contiguous from 0)"),
                    );
                }
                next_index = ix + 1;
                if first_row && last_episode == Some(ep) {
                    report(
                        c,
                        "episode",
                        format!(
                            "episode {ep} continues from the previous file: episodes must never be split across files"
                        ),
                    );
                }
                first_row = false;
                if last_episode != Some(ep) {
                    let want = last_episode.map_or(0, |e| e + 1);
                    if ep != want {
                        report(
                            c,
                            "episode",
                            format!("episode_index {ep} follows {last_episode:?}, expected {want}"),
                        );
                    }
                    if let Some(prev) = spans.get(&ep) {
                        report(
                            c,
                            "episode",
                            format!(
                                "episode {ep} appears again (first in chunk {} file {}): episodes must be contiguous and never split",
                                prev.file.0, prev.file.1
                            ),
                        );
                    } else {
                        spans.insert(
                            ep,
                            EpisodeSpan {
                                file: idx,
                                from: ix,
                                length: 0,
                                task_index: ti,
                            },
                        );
                    }
                    last_episode = Some(ep);
                    frame_in_ep = 0;
                }
                if let Some(s) = spans.get_mut(&ep) {
                    if s.file == idx {
                        s.length += 1;
                    }
                    if s.task_index != ti {
                        report(
                            c,
                            "task",
                            format!("episode {ep}: task_index changes within the episode"),
                        );
                    }
                }
                if fi != frame_in_ep {
                    report(
                        c,
                        "frame_index",
                        format!("episode {ep}: frame_index {fi}, expected {frame_in_ep}"),
                    );
                }
                frame_in_ep = fi + 1;
                if t.fps > 0.0 && (f64::from(ts) - fi as f64 / t.fps).abs() > TIMESTAMP_TOLERANCE_S
                {
                    report(
                        c,
                        "timestamp",
                        format!(
                            "episode {ep} frame {fi}: timestamp {ts}, expected frame_index/fps = {}",
                            fi as f64 / t.fps
                        ),
                    );
                }
                if ti < 0 || ti as u64 >= t.tasks {
                    report(
                        c,
                        "task",
                        format!(
                            "episode {ep} frame {fi}: task_index {ti} outside 0..{}",
                            t.tasks
                        ),
                    );
                }
                rows_total += 1;
            }
        }
    }
    if rows_total != t.frames {
        c.problem(format!(
            "meta/info.json: total_frames is {}, the data files hold {rows_total} rows",
            t.frames
        ));
    }
    if spans.len() as u64 != t.episodes {
        c.problem(format!(
            "meta/info.json: total_episodes is {}, the data files hold {} episodes",
            t.episodes,
            spans.len()
        ));
    }
    spans
}

/// Checks `meta/tasks.parquet`; returns the tasks by index.
fn check_tasks(c: &mut Checker, t: &Totals) -> Option<Vec<String>> {
    let path = c.root.join("meta/tasks.parquet");
    let f = "meta/tasks.parquet";
    let builder = open_parquet(c, &path)?;
    let schema = builder.schema().clone();
    let pandas = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "pandas"))
        .and_then(|k| k.value.clone());
    match pandas.map(|p| serde_json::from_str::<Value>(&p)) {
        None => c.problem(format!(
            "{f}: pandas metadata is missing (lerobot would return the task as an integer)"
        )),
        Some(Err(e)) => c.problem(format!("{f}: pandas metadata is not JSON: {e}")),
        Some(Ok(v)) if v["index_columns"] != serde_json::json!(["task"]) => c.problem(format!(
            "{f}: pandas index_columns is {}, expected [\"task\"]",
            v["index_columns"]
        )),
        _ => {}
    }
    let names: Vec<&str> = schema.fields().iter().map(|x| x.name().as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != ["task", "task_index"] {
        c.problem(format!(
            "{f}: columns are {names:?}, expected task_index and task"
        ));
        return None;
    }
    let mut tasks: Vec<(i64, String)> = Vec::new();
    let reader = builder.build().ok()?;
    for batch in reader {
        let Ok(batch) = batch else {
            c.problem(format!("{f}: read error"));
            return None;
        };
        let idx = batch.column_by_name("task_index")?;
        let task = batch.column_by_name("task")?;
        let (Some(idx), Some(task)) = (
            idx.as_primitive_opt::<Int64Type>(),
            task.as_string_opt::<i32>(),
        ) else {
            c.problem(format!("{f}: task_index must be int64 and task a string"));
            return None;
        };
        for r in 0..batch.num_rows() {
            tasks.push((idx.value(r), task.value(r).to_string()));
        }
    }
    if tasks.len() as u64 != t.tasks {
        c.problem(format!(
            "meta/info.json: total_tasks is {}, {f} holds {}",
            t.tasks,
            tasks.len()
        ));
    }
    tasks.sort();
    let mut seen = HashSet::new();
    for (i, (ti, task)) in tasks.iter().enumerate() {
        if *ti != i as i64 {
            c.problem(format!(
                "{f}: task_index values must be 0..{}, found {ti}",
                tasks.len()
            ));
            break;
        }
        if !seen.insert(task.as_str()) {
            c.problem(format!("{f}: task {task:?} is listed twice"));
        }
    }
    Some(tasks.into_iter().map(|x| x.1).collect())
}

fn int_col(batch: &arrow::record_batch::RecordBatch, name: &str) -> Option<Vec<i64>> {
    let a = batch
        .column_by_name(name)?
        .as_primitive_opt::<Int64Type>()?;
    Some((0..a.len()).map(|i| a.value(i)).collect())
}

/// Checks the episodes parquet files against the data files.
fn check_episodes(
    c: &mut Checker,
    feats: &[Feat],
    t: &Totals,
    spans: &BTreeMap<i64, EpisodeSpan>,
    tasks: Option<&[String]>,
) {
    let files = list_files(c, "meta/episodes", t.chunks_size);
    if files.is_empty() {
        c.problem("meta/episodes: no episodes parquet file");
        return;
    }
    let mut next_ep: i64 = 0;
    for (idx, path) in files {
        let name = rel(c, &path);
        let Some(builder) = open_parquet(c, &path) else {
            continue;
        };
        let schema = builder.schema().clone();
        let mut required: Vec<String> = [
            "episode_index",
            "tasks",
            "length",
            "data/chunk_index",
            "data/file_index",
            "dataset_from_index",
            "dataset_to_index",
            "meta/episodes/chunk_index",
            "meta/episodes/file_index",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in feats.iter().filter(|f| f.dtype != "string") {
            for k in STAT_KEYS {
                required.push(format!("stats/{}/{k}", f.name));
            }
        }
        let mut missing = false;
        for col in &required {
            if schema.field_with_name(col).is_err() {
                c.problem(format!("{name}: column {col} is missing"));
                missing = true;
            }
        }
        if missing {
            continue;
        }
        let Ok(reader) = builder.build() else {
            c.problem(format!("{name}: cannot read"));
            continue;
        };
        for batch in reader {
            let Ok(batch) = batch else {
                c.problem(format!("{name}: read error"));
                break;
            };
            let cols: Option<Vec<Vec<i64>>> = [
                "episode_index",
                "length",
                "data/chunk_index",
                "data/file_index",
                "dataset_from_index",
                "dataset_to_index",
                "meta/episodes/chunk_index",
                "meta/episodes/file_index",
            ]
            .iter()
            .map(|n| int_col(&batch, n))
            .collect();
            let Some(cols) = cols else {
                c.problem(format!("{name}: index and length columns must be int64"));
                break;
            };
            let tasks_col = batch
                .column_by_name("tasks")
                .and_then(|a| a.as_any().downcast_ref::<ListArray>().cloned());
            #[allow(clippy::needless_range_loop)] // r indexes several parallel columns
            for r in 0..batch.num_rows() {
                let ep = cols[0][r];
                let at = format!("{name}: episode {ep}");
                if ep != next_ep {
                    c.problem(format!(
                        "{at}: expected episode_index {next_ep} (rows in order)"
                    ));
                }
                next_ep = ep + 1;
                if (cols[6][r], cols[7][r]) != (idx.0 as i64, idx.1 as i64) {
                    c.problem(format!(
                        "{at}: meta/episodes/chunk_index,file_index = {},{} but the row is in chunk {} file {}",
                        cols[6][r], cols[7][r], idx.0, idx.1
                    ));
                }
                let (len, from, to) = (cols[1][r], cols[4][r], cols[5][r]);
                if to - from != len {
                    c.problem(format!(
                        "{at}: dataset_to_index − dataset_from_index = {} but length = {len}",
                        to - from
                    ));
                }
                match spans.get(&ep) {
                    None => c.problem(format!("{at}: no rows in the data files")),
                    Some(s) => {
                        if s.length != len || s.from != from {
                            c.problem(format!(
                                "{at}: length {len} from index {from}, data files have {} rows from index {}",
                                s.length, s.from
                            ));
                        }
                        if (cols[2][r], cols[3][r]) != (s.file.0 as i64, s.file.1 as i64) {
                            c.problem(format!(
                                "{at}: data/chunk_index,file_index = {},{} but its rows are in chunk {} file {}",
                                cols[2][r], cols[3][r], s.file.0, s.file.1
                            ));
                        }
                        if let (Some(tasks), Some(list)) = (tasks, &tasks_col) {
                            let v = list.value(r);
                            let names = v.as_string_opt::<i32>();
                            let ok = names.is_some_and(|n| {
                                n.len() > 0
                                    && (0..n.len()).all(|i| tasks.iter().any(|t| t == n.value(i)))
                                    && tasks
                                        .get(s.task_index as usize)
                                        .is_some_and(|t| (0..n.len()).any(|i| n.value(i) == t))
                            });
                            if !ok {
                                c.problem(format!(
                                    "{at}: tasks list does not name the episode's task from meta/tasks.parquet"
                                ));
                            }
                        }
                    }
                }
                for f in feats
                    .iter()
                    .filter(|f| !f.is_visual() && f.dtype != "string")
                {
                    let col = format!("stats/{}/count", f.name);
                    let count = batch
                        .column_by_name(&col)
                        .and_then(|a| a.as_any().downcast_ref::<ListArray>().cloned())
                        .and_then(|l| {
                            let v = l.value(r);
                            v.as_primitive_opt::<Int64Type>()
                                .filter(|p| p.len() == 1)
                                .map(|p| p.value(0))
                        });
                    if count != Some(len) {
                        c.problem(format!("{at}: {col} is {count:?}, expected [{len}]"));
                    }
                }
            }
        }
    }
    if next_ep as u64 != t.episodes {
        c.problem(format!(
            "meta/episodes: {next_ep} episode rows, info.json total_episodes is {}",
            t.episodes
        ));
    }
}

/// Shape of a JSON array (`[3,1,1]` for `[[[a]],[[b]],[[c]]]`), if it is a regular numeric
/// array with finite numbers.
fn json_shape(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()).map(|_| vec![]),
        Value::Array(items) => {
            let first = json_shape(items.first()?)?;
            for it in &items[1..] {
                if json_shape(it)? != first {
                    return None;
                }
            }
            let mut s = vec![items.len()];
            s.extend(first);
            Some(s)
        }
        _ => None,
    }
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => n.as_f64().into_iter().collect(),
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        _ => vec![],
    }
}

/// Checks `meta/stats.json`: every non-string feature, every key, lerobot's shapes.
fn check_stats(c: &mut Checker, feats: &[Feat], t: &Totals) {
    let f = "meta/stats.json";
    let stats: Value = match std::fs::read_to_string(c.root.join(f))
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            c.problem(format!("{f}: cannot read: {e}"));
            return;
        }
    };
    for feat in feats.iter().filter(|x| x.dtype != "string") {
        let Some(s) = stats.get(&feat.name) else {
            c.problem(format!("{f}: feature {} has no stats", feat.name));
            continue;
        };
        // lerobot checks [3,1,1] for any key containing "image".
        let visual = feat.is_visual() || feat.name.contains("image");
        let want: Vec<usize> = if visual {
            vec![3, 1, 1]
        } else {
            feat.shape.iter().map(|d| *d as usize).collect()
        };
        for key in STAT_KEYS {
            let Some(v) = s.get(key) else {
                c.problem(format!("{f}: {}: missing {key}", feat.name));
                continue;
            };
            let shape = json_shape(v);
            let expect = if key == "count" {
                vec![1]
            } else {
                want.clone()
            };
            if shape.as_ref() != Some(&expect) {
                c.problem(format!(
                    "{f}: {}: {key} has shape {shape:?}, expected {expect:?} of finite numbers",
                    feat.name
                ));
            }
        }
        if !visual && s["count"][0].as_u64() != Some(t.frames) {
            c.problem(format!(
                "{f}: {}: count is {}, expected total_frames {}",
                feat.name, s["count"], t.frames
            ));
        }
        let (min, max) = (flat(&s["min"]), flat(&s["max"]));
        if min.len() == max.len() && min.iter().zip(&max).any(|(a, b)| a > b) {
            c.problem(format!("{f}: {}: min exceeds max", feat.name));
        }
    }
}
