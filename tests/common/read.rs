//! Reading what a run wrote back: file trees, JSON files and parquet rows.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// Every file under `dir`, recursively, sorted by path (panics if `dir` cannot be read).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The files under `dir` ending in `.<ext>`, sorted (none when `dir` does not exist).
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect()
}

/// A JSON file, parsed.
pub fn json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A JSON-lines file, one value per line.
pub fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("reads")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Every record batch of `files`, in order.
pub fn batches(files: &[PathBuf]) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for f in files {
        let r = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    out
}

/// All rows of `files` as one batch; None when they hold no batch.
pub fn read_parquet(files: &[PathBuf]) -> Option<RecordBatch> {
    let batches = batches(files);
    let schema = batches.first()?.schema();
    Some(concat_batches(&schema, &batches).unwrap())
}

/// Every row of the parquet files under `ds/sub` (a file or a folder), in path order, as one
/// batch.
pub fn all_rows(ds: &Path, sub: &str) -> RecordBatch {
    let at = ds.join(sub);
    let files = if at.is_file() {
        vec![at]
    } else {
        files_with(&at, "parquet")
    };
    read_parquet(&files).expect("rows")
}

/// Every file's bytes, by path relative to `ds`.
pub fn files_bytes(ds: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(ds)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(ds).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Where a dataset keeps its conversion log.
pub const CONVERSION_LOG: &str = "meta/conversion_log.json";

/// The conversion log of `ds` without its timings (`wall_s`), which differ run to run.
pub fn log_without_timings(ds: &Path) -> Value {
    let mut v = json(&ds.join(CONVERSION_LOG));
    for b in v["bags"].as_array_mut().unwrap() {
        b.as_object_mut().unwrap().remove("wall_s");
    }
    v
}
