//! "The same dataset in any file layout": what a merge or a `--jobs` run must equal a single
//! run in. Data rows (every column, in `index` order), episode rows without the columns that
//! only place an episode in the files, tasks, info.json totals and features, stats.json within
//! float tolerance, both valid; and for video features, every episode's frames of every camera
//! decoded from wherever its file and time range put them, equal frame for frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch};
use serde_json::Value;

use super::read::{CONVERSION_LOG, all_rows, files_bytes, json, log_without_timings};

/// A column that only says where an episode sits in the files.
fn layout_column(name: &str) -> bool {
    name.starts_with("data/")
        || name.starts_with("meta/")
        || (name.starts_with("videos/")
            && (name.ends_with("chunk_index")
                || name.ends_with("file_index")
                || name.ends_with("from_timestamp")
                || name.ends_with("to_timestamp")))
}

/// A column that says which data file holds an episode (it depends on how runs were split: an
/// append starts a new data file).
pub fn data_placement_column(name: &str) -> bool {
    name.starts_with("data/") || name.starts_with("meta/")
}

/// Episode rows without the columns `drop` names.
fn episodes_without(ds: &Path, drop: fn(&str) -> bool) -> RecordBatch {
    let b = all_rows(ds, "meta/episodes");
    let keep: Vec<usize> = (0..b.num_columns())
        .filter(|i| !drop(b.schema().field(*i).name()))
        .collect();
    b.project(&keep).unwrap()
}

/// Numbers equal within a relative 1e-9 (stats aggregated in another order of additions).
pub fn assert_json_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_json_close(u, v, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}: keys"
            );
            for (k, u) in x {
                assert_json_close(u, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// Frames of every episode of every video feature, decoded: (feature, episode) → RGB frames.
pub fn episode_frames(ds: &Path) -> BTreeMap<(String, i64), Vec<Vec<u8>>> {
    let info = json(&ds.join("meta/info.json"));
    let fps = info["fps"].as_f64().unwrap();
    let path_tpl = info["video_path"].as_str().unwrap_or_default().to_string();
    let eps = all_rows(ds, "meta/episodes");
    let int = |c: &str| {
        eps.column_by_name(c)
            .unwrap_or_else(|| panic!("{c}"))
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone()
    };
    let float = |c: &str| {
        eps.column_by_name(c)
            .unwrap_or_else(|| panic!("{c}"))
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    };
    let mut decoded: BTreeMap<PathBuf, Vec<Vec<u8>>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (key, f) in info["features"].as_object().unwrap() {
        if f["dtype"] != "video" {
            continue;
        }
        let shape: Vec<u64> = f["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let frame_bytes = (shape[0] * shape[1] * 3) as usize;
        let (chunk, file) = (
            int(&format!("videos/{key}/chunk_index")),
            int(&format!("videos/{key}/file_index")),
        );
        let (from, to) = (
            float(&format!("videos/{key}/from_timestamp")),
            float(&format!("videos/{key}/to_timestamp")),
        );
        let episode = int("episode_index");
        for row in 0..eps.num_rows() {
            let rel = path_tpl
                .replace("{video_key}", key)
                .replace("{chunk_index:03d}", &format!("{:03}", chunk.value(row)))
                .replace("{file_index:03d}", &format!("{:03}", file.value(row)));
            let p = ds.join(rel);
            let frames = decoded.entry(p.clone()).or_insert_with(|| {
                let o = Command::new("ffmpeg")
                    .args(["-v", "error", "-i"])
                    .arg(&p)
                    .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "decodes {}", p.display());
                o.stdout.chunks(frame_bytes).map(<[u8]>::to_vec).collect()
            });
            let (a, b) = (
                (from.value(row) * fps).round() as usize,
                (to.value(row) * fps).round() as usize,
            );
            assert!(
                a < b && b <= frames.len(),
                "{}: episode {} frames {a}..{b} of {}",
                p.display(),
                episode.value(row),
                frames.len()
            );
            out.insert((key.clone(), episode.value(row)), frames[a..b].to_vec());
        }
    }
    out
}

/// The `info.json` keys every comparison checks.
pub const INFO_TOTALS: [&str; 6] = [
    "total_episodes",
    "total_frames",
    "total_tasks",
    "features",
    "fps",
    "splits",
];

/// Same data rows (every column, in `index` order), episode rows but for the columns `drop`
/// names, tasks, `info.json` values of `info_keys`, stats within float tolerance; both valid.
pub fn assert_same_tables(a: &Path, b: &Path, drop: fn(&str) -> bool, info_keys: &[&str]) {
    assert!(
        all_rows(a, "data") == all_rows(b, "data"),
        "data rows of {} vs {}",
        a.display(),
        b.display()
    );
    assert!(
        episodes_without(a, drop) == episodes_without(b, drop),
        "episode rows of {} vs {}",
        a.display(),
        b.display()
    );
    assert!(
        all_rows(a, "meta/tasks.parquet") == all_rows(b, "meta/tasks.parquet"),
        "tasks"
    );
    let (ia, ib) = (
        json(&a.join("meta/info.json")),
        json(&b.join("meta/info.json")),
    );
    for k in info_keys {
        assert_eq!(ia[k], ib[k], "info.json {k}");
    }
    assert_json_close(
        &json(&a.join("meta/stats.json")),
        &json(&b.join("meta/stats.json")),
        "stats",
    );
    for ds in [a, b] {
        let problems = bag2dataset::dataset::validate(ds).unwrap();
        assert!(problems.is_empty(), "{}: {problems:?}", ds.display());
    }
}

/// `a` and `b` hold the same dataset, whatever their files' layout (see the module docs).
pub fn assert_same_in_any_layout(a: &Path, b: &Path) {
    let keys: Vec<&str> = INFO_TOTALS
        .iter()
        .copied()
        .chain(["video_path", "data_path"])
        .collect();
    assert_same_tables(a, b, layout_column, &keys);
    let (fa, fb) = (episode_frames(a), episode_frames(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "video episodes"
    );
    for (k, x) in &fa {
        let y = &fb[k];
        assert_eq!(x.len(), y.len(), "{k:?}: frame count");
        assert!(x == y, "{k:?}: decoded frames differ");
    }
}

/// Byte-identical datasets, the conversion logs (present in both) compared without their
/// timings.
pub fn assert_byte_identical(a: &Path, b: &Path) {
    let (mut sa, mut sb) = (files_bytes(a), files_bytes(b));
    assert!(sa.remove(CONVERSION_LOG).is_some(), "{}", a.display());
    assert!(sb.remove(CONVERSION_LOG).is_some(), "{}", b.display());
    assert_eq!(
        sa.keys().collect::<Vec<_>>(),
        sb.keys().collect::<Vec<_>>(),
        "file lists of {} and {}",
        a.display(),
        b.display()
    );
    for (k, v) in &sa {
        assert!(
            *v == sb[k],
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(log_without_timings(a), log_without_timings(b));
}

/// Peak signal-to-noise ratio of two RGB frames, dB (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}
