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

mod data;
mod episodes;
mod info;
mod stats;
mod tasks;
mod video;
use data::*;
use episodes::*;
use info::*;
use stats::*;
use tasks::*;

/// Row-level problems reported per file and kind before the rest are summarised: 5.
const MAX_ROW_PROBLEMS: usize = 5;
/// Rows decoded per batch while scanning the default columns: 8192.
const SCAN_BATCH_ROWS: usize = 8192;
/// Largest allowed `|timestamp − frame_index/fps|`, in seconds (lerobot's tolerance): 1e-4.
const TIMESTAMP_TOLERANCE_S: f64 = 1e-4;

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

/// Totals and settings from `info.json`.
#[derive(Debug, Clone, Default)]
struct Totals {
    fps: f64,
    episodes: u64,
    frames: u64,
    tasks: u64,
    chunks_size: u64,
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
    c.problems.extend(video::check(dataset, &info));
    Ok(c.problems)
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

fn int_col(batch: &arrow::record_batch::RecordBatch, name: &str) -> Option<Vec<i64>> {
    let a = batch
        .column_by_name(name)?
        .as_primitive_opt::<Int64Type>()?;
    Some((0..a.len()).map(|i| a.value(i)).collect())
}
