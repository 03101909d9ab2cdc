//! The video part of `validate`: every video feature declares lerobot's `info` block, every
//! episode row names its video file and a time range of exactly `length / fps` seconds, the
//! episodes of a file follow each other from 0 without gaps, the files exist in chunk/file
//! order and nothing else is under `videos/`. When `ffprobe` is on the `PATH`, each file's frame
//! count, frame rate and size are checked against the episodes too. (That video features have
//! no parquet column is checked with the data files.)

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow::array::{Array, Float64Array, Int64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::dataset::VIDEO_PATH_TEMPLATE;
use crate::dataset::info::{InfoFeature, InfoJson};
use crate::dataset::video::SEGMENTS_DIR;

/// Largest accepted gap or overlap between timestamps, in seconds (lerobot's tolerance): 1e-4.
const VIDEO_TIMESTAMP_TOLERANCE_S: f64 = 1e-4;

/// One episode's place in a video file.
#[derive(Debug, Clone, Copy)]
struct Placed {
    episode: i64,
    length: i64,
    from: f64,
    to: f64,
}

/// Problems of the video layout of the dataset at `root` whose `info.json` is `info` (empty
/// when it has no videos or they are fine).
pub(crate) fn check(root: &Path, info: &InfoJson) -> Vec<String> {
    let mut problems = Vec::new();
    let fps = f64::from(info.fps);
    let keys: Vec<(String, &InfoFeature)> = info
        .features
        .iter()
        .filter(|(_, f)| f.dtype == "video")
        .map(|(k, f)| (k.clone(), f))
        .collect();
    if root.join(SEGMENTS_DIR).exists() {
        problems.push(format!(
            "{SEGMENTS_DIR}: unfinished video segments left in the dataset"
        ));
    }
    if keys.is_empty() {
        if root.join("videos").exists() {
            problems.push("videos/: present but no feature has dtype \"video\"".into());
        }
        return problems;
    }
    if info.video_path.as_deref() != Some(VIDEO_PATH_TEMPLATE) {
        problems.push(format!(
            "meta/info.json: video_path is {:?}, expected {VIDEO_PATH_TEMPLATE:?}",
            info.video_path
        ));
    }
    for (k, f) in &keys {
        check_info_block(&mut problems, k, f, fps);
    }
    let chunks_size = info.chunks_size.max(1);
    let rows = match read_rows(root, &keys) {
        Ok(r) => r,
        Err(p) => {
            problems.push(p);
            return problems;
        }
    };
    let ffprobe = ffprobe_available();
    for (ki, (key, _)) in keys.iter().enumerate() {
        let mut files: BTreeMap<(i64, i64), Vec<Placed>> = BTreeMap::new();
        for (placed, where_) in &rows {
            let (chunk, file, from, to) = where_[ki];
            let at = format!("meta/episodes: episode {} videos/{key}", placed.episode);
            if fps > 0.0 && ((to - from) - placed.length as f64 / fps).abs() > 1e-6 {
                problems.push(format!(
                    "{at}: to_timestamp − from_timestamp = {:.6} s but length {} at {fps} fps is {:.6} s",
                    to - from,
                    placed.length,
                    placed.length as f64 / fps
                ));
            }
            files.entry((chunk, file)).or_default().push(Placed {
                from,
                to,
                ..*placed
            });
        }
        let mut want = (0i64, 0i64);
        for ((chunk, file), eps) in &files {
            let rel = crate::dataset::video_file_path(key, *chunk as usize, *file as usize);
            if (*chunk, *file) != want {
                problems.push(format!(
                    "videos/{key}: expected chunk-{:03}/file-{:03}.mp4 next, found {rel}",
                    want.0, want.1
                ));
            }
            want = if (*file as u64) + 1 >= chunks_size {
                (chunk + 1, 0)
            } else {
                (*chunk, file + 1)
            };
            let path = root.join(&rel);
            if !path.is_file() {
                problems.push(format!("{rel}: missing (named by meta/episodes)"));
                continue;
            }
            let mut expect_from = 0.0;
            for e in eps {
                if (e.from - expect_from).abs() > VIDEO_TIMESTAMP_TOLERANCE_S {
                    problems.push(format!(
                        "{rel}: episode {} starts at {:.6} s, expected {expect_from:.6} s (episodes of a file follow each other from 0)",
                        e.episode, e.from
                    ));
                }
                expect_from = e.to;
            }
            let frames: i64 = eps.iter().map(|e| e.length).sum();
            if ffprobe && let Some(p) = probe_problem(&path, &rel, frames, fps) {
                problems.push(p);
            }
        }
        stray_files(&mut problems, root, key, &files);
    }
    problems
}

fn check_info_block(problems: &mut Vec<String>, key: &str, f: &InfoFeature, fps: f64) {
    let at = format!("meta/info.json: feature {key}");
    let shape = &f.shape;
    if shape.len() != 3 || shape[2] != 3 {
        problems.push(format!("{at}: video shape must be [H, W, 3]"));
    }
    let Some(info) = &f.info else {
        problems.push(format!("{at}: video feature without an `info` block"));
        return;
    };
    for k in crate::dataset::video::INFO_BLOCK_KEYS {
        if info.get(k).is_none() {
            problems.push(format!("{at}: info.{k} missing"));
        }
    }
    let get = |k: &str| info.get(k).unwrap_or(&Value::Null);
    if get("video.fps").as_f64().is_some_and(|v| v != fps) {
        problems.push(format!(
            "{at}: info.video.fps {} differs from the dataset fps {fps}",
            get("video.fps")
        ));
    }
    if shape.len() == 3
        && (get("video.height").as_u64() != Some(shape[0])
            || get("video.width").as_u64() != Some(shape[1]))
    {
        problems.push(format!("{at}: info video size differs from its shape"));
    }
}

/// Per episode: (episode, length, -, -) and per video key (chunk, file, from, to).
type Row = (Placed, Vec<(i64, i64, f64, f64)>);

fn read_rows(root: &Path, keys: &[(String, &InfoFeature)]) -> Result<Vec<Row>, String> {
    let dir = root.join("meta/episodes");
    let mut paths = Vec::new();
    for chunk in std::fs::read_dir(&dir)
        .map_err(|e| format!("meta/episodes: {e}"))?
        .flatten()
    {
        for f in std::fs::read_dir(chunk.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|x| x == "parquet") {
                paths.push(f.path());
            }
        }
    }
    paths.sort();
    let mut rows = Vec::new();
    for p in paths {
        let name = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .to_string();
        let reader = File::open(&p)
            .ok()
            .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok())
            .and_then(|b| b.build().ok())
            .ok_or_else(|| format!("{name}: cannot read"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{name}: {e}"))?;
            let int = |col: &str| -> Result<Int64Array, String> {
                batch
                    .column_by_name(col)
                    .and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned())
                    .ok_or_else(|| format!("{name}: column {col} is missing or not int64"))
            };
            let float = |col: &str| -> Result<Float64Array, String> {
                batch
                    .column_by_name(col)
                    .and_then(|a| a.as_any().downcast_ref::<Float64Array>().cloned())
                    .ok_or_else(|| format!("{name}: column {col} is missing or not double"))
            };
            let (ep, len) = (int("episode_index")?, int("length")?);
            let mut per_key = Vec::new();
            for (k, _) in keys {
                per_key.push((
                    int(&format!("videos/{k}/chunk_index"))?,
                    int(&format!("videos/{k}/file_index"))?,
                    float(&format!("videos/{k}/from_timestamp"))?,
                    float(&format!("videos/{k}/to_timestamp"))?,
                ));
            }
            for r in 0..batch.num_rows() {
                let placed = Placed {
                    episode: ep.value(r),
                    length: len.value(r),
                    from: 0.0,
                    to: 0.0,
                };
                let where_ = per_key
                    .iter()
                    .map(|(c, f, a, b)| (c.value(r), f.value(r), a.value(r), b.value(r)))
                    .collect();
                rows.push((placed, where_));
            }
        }
    }
    rows.sort_by_key(|r| r.0.episode);
    Ok(rows)
}

fn stray_files(
    problems: &mut Vec<String>,
    root: &Path,
    key: &str,
    files: &BTreeMap<(i64, i64), Vec<Placed>>,
) {
    let dir = root.join("videos").join(key);
    for chunk in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(chunk.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let rel = format!(
                "videos/{key}/{}/{}",
                chunk.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            let known = files.keys().any(|(c, fi)| {
                crate::dataset::video_file_path(key, *c as usize, *fi as usize) == rel
            });
            if !known {
                problems.push(format!("{rel}: not named by any episode"));
            }
        }
    }
}

fn ffprobe_available() -> bool {
    Command::new("ffprobe")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// ffprobe's packet count and frame rate of the file against the episodes in it.
fn probe_problem(path: &Path, rel: &str, frames: i64, fps: f64) -> Option<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=nb_read_packets,r_frame_rate",
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return Some(format!(
            "{rel}: ffprobe cannot read it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    let packets: Option<i64> = get("nb_read_packets").and_then(|v| v.parse().ok());
    if packets != Some(frames) {
        return Some(format!(
            "{rel}: {} frames, its episodes have {frames}",
            packets.map_or("an unknown number of".to_string(), |p| p.to_string())
        ));
    }
    let rate = get("r_frame_rate").and_then(|r| {
        let (a, b) = r.split_once('/')?;
        Some(a.parse::<f64>().ok()? / b.parse::<f64>().ok()?)
    });
    if rate.is_some_and(|r| (r - fps).abs() > 1e-9) {
        return Some(format!(
            "{rel}: frame rate {} differs from the dataset fps {fps}",
            get("r_frame_rate").unwrap_or("?")
        ));
    }
    None
}
