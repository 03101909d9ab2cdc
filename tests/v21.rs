//! LeRobot v2.1 output (`convert --format v2.1`, `convert-format`, `validate` on v2.1): the
//! layout of the demo and of a video conversion, the v3.0 → v2.1 → v3.0 round trip (same
//! tables; same decoded frames for video), nightly appends equal to one run, kill -9 then re-run
//! byte-identical, `validate` catching broken datasets, and (when the venvs exist) lerobot
//! 0.3.3 loading the v2.1 output and lerobot 0.4.4 the round-tripped v3.0.
//!
//! Video tests print `SKIPPED` without ffmpeg/ffprobe; lerobot tests print `SKIPPED` without
//! their venv (`LEROBOT033_PYTHON`, default /tmp/v21-venv/bin/python; `LEROBOT_PYTHON`,
//! default /tmp/lerobotvenv/bin/python).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression};
use bag2dataset::layout::validate_v21;
use common::bags::{
    CAM_AND_STATE, cameras_and_joints, compressed_image, joint_names, joint_positions,
};
use common::cli::{bin, bin_cmd, ffmpeg_present, stderr, tmp};
use common::read::{
    CONVERSION_LOG, files_bytes, files_with, json, jsonl, log_without_timings, read_parquet, walk,
};
use common::same::assert_byte_identical;
use common::{CameraBag, FRAME_H as H, FRAME_W as W, START, SyntheticBag, demo_bag};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `convert INPUT -o OUT --format v2.1 -q EXTRA…`, which must succeed.
fn convert_v21(input: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["convert", s(input), "-o", s(out), "--format", "v2.1", "-q"];
    args.extend_from_slice(extra);
    ok(&args);
}

fn ok(args: &[&str]) {
    let o = bin(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
}

/// All rows of the parquet files, concatenated, schema metadata dropped.
fn table(files: &[PathBuf]) -> RecordBatch {
    let b = read_parquet(files).expect("rows");
    let plain = std::sync::Arc::new(arrow::datatypes::Schema::new(b.schema().fields().clone()));
    b.with_schema(plain).unwrap()
}

/// Three synthetic bags (different lengths and grey levels) in `dir/in`.
fn make_bags(dir: &Path, n: u64) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for k in 0..n {
        SyntheticBag {
            seconds: 1 + k % 3,
            seed: k,
            start_s: k * 100,
            ..SyntheticBag::default()
        }
        .write(&inputs.join(format!("b{k:02}.bag")));
    }
    inputs
}

/// Every file's bytes by relative path; the conversion log without its timings.
fn snapshot(ds: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = files_bytes(ds);
    if m.remove(CONVERSION_LOG).is_some() {
        m.insert(
            CONVERSION_LOG.into(),
            log_without_timings(ds).to_string().into_bytes(),
        );
    }
    m
}

fn assert_valid(ds: &Path) {
    let problems = validate_v21(ds).unwrap();
    assert!(problems.is_empty(), "{}: {problems:#?}", ds.display());
}

#[test]
fn demo_v21_layout() {
    let dir = tmp("demo");
    let v21 = dir.join("v21");
    let v30 = dir.join("v30");
    convert_v21(&demo_bag(), &v21, &[]);
    ok(&["convert", s(&demo_bag()), "-o", s(&v30), "-q"]);
    let info = json(&v21.join("meta/info.json"));
    assert_eq!(info["codebase_version"], "v2.1");
    assert_eq!(info["chunks_size"], 1000);
    assert_eq!(info["total_episodes"], 1);
    assert_eq!(info["total_chunks"], 1);
    assert_eq!(info["total_videos"], 0);
    assert_eq!(info["splits"]["train"], "0:1");
    assert_eq!(
        info["data_path"],
        "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    );
    assert!(info["video_path"].is_null());
    let info30 = json(&v30.join("meta/info.json"));
    assert_eq!(info["features"], info30["features"]);
    assert_eq!(info["total_frames"], info30["total_frames"]);
    let keys: Vec<String> = walk(&v21)
        .iter()
        .map(|p| p.strip_prefix(&v21).unwrap().display().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "data/chunk-000/episode_000000.parquet",
            "meta/conversion_log.json",
            "meta/episodes.jsonl",
            "meta/episodes_stats.jsonl",
            "meta/info.json",
            "meta/stats.json",
            "meta/tasks.jsonl",
        ]
    );
    let eps = jsonl(&v21.join("meta/episodes.jsonl"));
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["episode_index"], 0);
    assert_eq!(eps[0]["length"], info30["total_frames"]);
    let tasks = jsonl(&v21.join("meta/tasks.jsonl"));
    assert_eq!(tasks[0]["task_index"], 0);
    // per-episode stats in v2.1's shapes: images [3,1,1], vectors [n], count [1]
    let st = &jsonl(&v21.join("meta/episodes_stats.jsonl"))[0]["stats"];
    for (name, f) in info["features"].as_object().unwrap() {
        let x = &st[name];
        assert_eq!(x["count"].as_array().unwrap().len(), 1, "{name}");
        if f["dtype"] == "image" {
            assert_eq!(x["mean"].as_array().unwrap().len(), 3, "{name}");
            assert_eq!(x["mean"][0][0].as_array().unwrap().len(), 1, "{name}");
        } else {
            assert_eq!(
                x["mean"].as_array().unwrap().len() as u64,
                f["shape"][0].as_u64().unwrap()
            );
        }
    }
    // the rows are the v3.0 conversion's rows
    assert_eq!(
        table(&files_with(&v21.join("data"), "parquet")),
        table(&files_with(&v30.join("data"), "parquet"))
    );
    assert_valid(&v21);
    let o = bin(&["validate", s(&v21)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid LeRobot v2.1 dataset"));
    // nothing left beside the output
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".v21-") || n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_format_key_selects_v21() {
    let dir = tmp("cfgkey");
    let cfg = dir.join("c.toml");
    let o = bin(&[
        "convert",
        s(&demo_bag()),
        "-o",
        s(&dir.join("x")),
        "--print-config",
    ]);
    assert_eq!(o.status.code(), Some(0));
    // top-level keys come before the first [[features]] table
    let text = format!("format = \"v2.1\"\n{}", String::from_utf8_lossy(&o.stdout));
    std::fs::write(&cfg, text).unwrap();
    let out = dir.join("out");
    ok(&[
        "convert",
        s(&demo_bag()),
        "-o",
        s(&out),
        "-c",
        s(&cfg),
        "-q",
    ]);
    assert_eq!(
        json(&out.join("meta/info.json"))["codebase_version"],
        "v2.1"
    );
    // the same config again: nothing new, still valid and unchanged
    let before = snapshot(&out);
    ok(&[
        "convert",
        s(&demo_bag()),
        "-o",
        s(&out),
        "-c",
        s(&cfg),
        "-q",
    ]);
    assert_eq!(before, snapshot(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn round_trip_v30_v21_v30_gives_the_same_tables() {
    let dir = tmp("roundtrip");
    let inputs = make_bags(&dir, 3);
    let a = dir.join("a30");
    let b = dir.join("b21");
    let c = dir.join("c30");
    ok(&["convert", s(&inputs), "-o", s(&a), "-q", "--jobs", "1"]);
    ok(&["convert-format", s(&a), "-o", s(&b), "--to", "v2.1"]);
    assert_valid(&b);
    assert_eq!(files_with(&b.join("data"), "parquet").len(), 3);
    ok(&["convert-format", s(&b), "-o", s(&c), "--to", "v3.0"]);
    assert!(bag2dataset::dataset::validate(&c).unwrap().is_empty());
    assert_eq!(
        table(&files_with(&a.join("data"), "parquet")),
        table(&files_with(&c.join("data"), "parquet")),
        "data rows"
    );
    assert_eq!(
        table(&files_with(&a.join("meta/episodes"), "parquet")),
        table(&files_with(&c.join("meta/episodes"), "parquet")),
        "episodes rows (stats included)"
    );
    assert_eq!(
        table(&[a.join("meta/tasks.parquet")]),
        table(&[c.join("meta/tasks.parquet")])
    );
    assert_eq!(
        json(&a.join("meta/info.json")),
        json(&c.join("meta/info.json"))
    );
    assert_eq!(
        json(&a.join("meta/stats.json")),
        json(&c.join("meta/stats.json"))
    );
    assert_eq!(
        std::fs::read(a.join("meta/conversion_log.json")).unwrap(),
        std::fs::read(c.join("meta/conversion_log.json")).unwrap()
    );
    // converting to the version it already has is refused
    let o = bin(&[
        "convert-format",
        s(&a),
        "-o",
        s(&dir.join("d")),
        "--to",
        "v3.0",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("already a v3.0 dataset"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn appending_one_bag_at_a_time_equals_one_run() {
    let dir = tmp("append");
    let inputs = make_bags(&dir, 3);
    let one = dir.join("one");
    convert_v21(&inputs, &one, &["--jobs", "1"]);
    let nightly = dir.join("nightly");
    let bags = files_with(&inputs, "bag");
    for k in 1..=bags.len() {
        let mut args = vec!["convert".to_string()];
        // each night sees every bag so far: the old ones are skipped
        args.extend(bags[..k].iter().map(|p| p.display().to_string()));
        args.extend(["-o", s(&nightly), "--format", "v2.1", "-q"].map(String::from));
        let o = bin_cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "night {k}: {}", stderr(&o));
        assert_valid(&nightly);
        assert_eq!(
            json(&nightly.join("meta/info.json"))["total_episodes"],
            k as u64
        );
    }
    assert_byte_identical(&one, &nightly);
    // a re-run with nothing new leaves every byte as it was
    let before = snapshot(&nightly);
    convert_v21(&inputs, &nightly, &[]);
    assert_eq!(before, snapshot(&nightly));
    // a run that names no format continues the output's v2.1 ...
    let more = dir.join("more");
    std::fs::create_dir_all(&more).unwrap();
    SyntheticBag {
        seed: 9,
        start_s: 900,
        ..SyntheticBag::default()
    }
    .write(&more.join("b09.bag"));
    ok(&["convert", s(&inputs), s(&more), "-o", s(&nightly), "-q"]);
    assert_eq!(json(&nightly.join("meta/info.json"))["total_episodes"], 4);
    assert_valid(&nightly);
    // ... while v3.0 into a v2.1 dataset (or v2.1 into a v3.0 one) is refused, not mixed
    let o = bin(&[
        "convert",
        s(&inputs),
        "-o",
        s(&nightly),
        "--format",
        "v3.0",
        "-q",
    ]);
    assert_ne!(o.status.code(), Some(0), "v3.0 run into a v2.1 dataset");
    assert!(stderr(&o).contains("v2.1 dataset"), "{}", stderr(&o));
    let v30 = dir.join("v30");
    ok(&["convert", s(&inputs), "-o", s(&v30), "-q"]);
    let o = bin(&[
        "convert",
        s(&inputs),
        s(&more),
        "-o",
        s(&v30),
        "--format",
        "v2.1",
        "-q",
    ]);
    assert_ne!(o.status.code(), Some(0), "v2.1 run into a v3.0 dataset");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigkill_then_rerun_is_byte_identical() {
    let dir = tmp("sigkill");
    let inputs = make_bags(&dir, 4);
    let reference = dir.join("ref");
    let t = Instant::now();
    convert_v21(&inputs, &reference, &["--jobs", "1"]);
    let full = t.elapsed();
    let first: Vec<String> = files_with(&inputs, "bag")
        .iter()
        .take(2)
        .map(|p| p.display().to_string())
        .collect();
    let fractions = [0.02, 0.2, 0.45, 0.7, 0.9, 1.2];
    for (i, f) in fractions.iter().enumerate() {
        let out = dir.join(format!("killed-{i}"));
        if i % 2 == 1 {
            // kill an appending run
            let mut args = vec!["convert".to_string()];
            args.extend(first.iter().cloned());
            args.extend(["-o", s(&out), "--format", "v2.1", "-q"].map(String::from));
            assert_eq!(bin_cmd().args(&args).status().unwrap().code(), Some(0));
        }
        let mut child = bin_cmd()
            .args([
                "convert",
                s(&inputs),
                "-o",
                s(&out),
                "--format",
                "v2.1",
                "-q",
                "--jobs",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(*f).max(Duration::from_millis(5)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if out.join("meta/info.json").exists() {
            assert_valid(&out);
        }
        convert_v21(&inputs, &out, &["--jobs", "1"]);
        assert_byte_identical(&reference, &out);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".v21-") || n.ends_with(".lock") || n.contains(".partial-"))
            .collect();
        assert!(left.is_empty(), "kill {i}: left behind {left:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Rewrites one line of a jsonl file.
fn edit_jsonl(p: &Path, line: usize, f: impl Fn(&mut Value)) {
    let mut lines = jsonl(p);
    f(&mut lines[line]);
    let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(p, text).unwrap();
}

#[test]
fn validate_catches_broken_v21_datasets() {
    let dir = tmp("broken");
    let inputs = make_bags(&dir, 2);
    let good = dir.join("good");
    convert_v21(&inputs, &good, &["--jobs", "1"]);
    assert_valid(&good);
    let copy = |name: &str| {
        let d = dir.join(name);
        for p in walk(&good) {
            let t = d.join(p.strip_prefix(&good).unwrap());
            std::fs::create_dir_all(t.parent().unwrap()).unwrap();
            std::fs::copy(&p, &t).unwrap();
        }
        d
    };
    let expect = |d: &Path, needle: &str| {
        let problems = validate_v21(d).unwrap();
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{}: expected a problem with {needle:?}, got {problems:#?}",
            d.display()
        );
        let o = bin(&["validate", s(d)]);
        assert_eq!(o.status.code(), Some(1), "validate exit code");
    };
    // a missing episode file
    let d = copy("missing");
    std::fs::remove_file(d.join("data/chunk-000/episode_000001.parquet")).unwrap();
    expect(&d, "episode_000001.parquet");
    // a wrong length in episodes.jsonl
    let d = copy("length");
    edit_jsonl(&d.join("meta/episodes.jsonl"), 0, |v| {
        v["length"] = Value::from(v["length"].as_u64().unwrap() + 1)
    });
    expect(&d, "rows, episodes.jsonl says");
    // chunks_size counts episodes: 1000
    let d = copy("chunks");
    let mut info = json(&d.join("meta/info.json"));
    info["chunks_size"] = Value::from(2);
    std::fs::write(d.join("meta/info.json"), info.to_string()).unwrap();
    expect(&d, "chunks_size");
    // image stats must be [3, 1, 1]
    let d = copy("stats");
    edit_jsonl(&d.join("meta/episodes_stats.jsonl"), 1, |v| {
        v["stats"]["observation.images.cam"]["mean"] = serde_json::json!([0.5, 0.5, 0.5])
    });
    expect(&d, "[3, 1, 1]");
    // a stray parquet under data/ (lerobot would load its rows)
    let d = copy("stray");
    std::fs::copy(
        d.join("data/chunk-000/episode_000000.parquet"),
        d.join("data/chunk-000/episode_000007.parquet"),
    )
    .unwrap();
    expect(&d, "no episode names");
    // episodes out of order
    let d = copy("order");
    edit_jsonl(&d.join("meta/episodes.jsonl"), 1, |v| {
        v["episode_index"] = Value::from(5)
    });
    expect(&d, "episode_index 5, expected 1");
    std::fs::remove_dir_all(&dir).ok();
}

// ---- video ----

/// A bag with a 30 Hz camera of `frames` varying JPEGs and a 100 Hz joint topic, starting
/// `seed` × 100 s after START.
fn camera_bag(path: &Path, frames: u32, seed: u32) {
    CameraBag {
        chunk_threshold: 256 * 1024,
        start: START + u64::from(seed) * 100_000_000_000,
        ..CameraBag::new(frames, seed)
    }
    .write(path);
}

fn video_config() -> String {
    format!("timeline = \"/cam/image/compressed\"\nstorage = \"video\"\n{CAM_AND_STATE}")
}

/// The decoded frames' md5 (ffmpeg framemd5), in order.
fn frame_md5s(video: &Path) -> Vec<String> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// Every packet's pts in seconds.
fn pts(video: &Path) -> Vec<f64> {
    let o = Command::new("ffprobe")
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
        .arg(video)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// A v3.0 video conversion of three camera bags (45, 30 and 61 frames), in `dir/v30`.
fn video_v30(dir: &Path) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for (k, n) in [45u32, 30, 61].iter().enumerate() {
        camera_bag(&inputs.join(format!("cam{k}.bag")), *n, k as u32);
    }
    let cfg = dir.join("video.toml");
    std::fs::write(&cfg, video_config()).unwrap();
    let v30 = dir.join("v30");
    ok(&["convert", s(&inputs), "-o", s(&v30), "-c", s(&cfg), "-q"]);
    v30
}

#[test]
fn video_v21_layout_cuts_episodes_by_stream_copy_and_joins_them_back() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("video");
    let v30 = video_v30(&dir);
    let v21 = dir.join("v21");
    ok(&["convert-format", s(&v30), "-o", s(&v21), "--to", "v2.1"]);
    assert_valid(&v21);
    let info = json(&v21.join("meta/info.json"));
    assert_eq!(info["total_videos"], 3);
    assert_eq!(
        info["video_path"],
        "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    );
    assert_eq!(info["features"]["observation.images.cam"]["dtype"], "video");
    let fps = info["fps"].as_f64().unwrap();
    // the v3.0 file's frames, split by episode lengths, are the v2.1 episodes' frames
    let src = files_with(&v30.join("videos"), "mp4");
    let mut all = Vec::new();
    for f in &src {
        all.extend(frame_md5s(f));
    }
    let eps = jsonl(&v21.join("meta/episodes.jsonl"));
    let mut at = 0usize;
    for (i, e) in eps.iter().enumerate() {
        let len = e["length"].as_u64().unwrap() as usize;
        let mp4 = v21.join(format!(
            "videos/chunk-000/observation.images.cam/episode_{i:06}.mp4"
        ));
        let got = frame_md5s(&mp4);
        assert_eq!(got.len(), len, "episode {i} frame count");
        assert_eq!(
            got,
            all[at..at + len],
            "episode {i}: decoded frames differ from the v3.0 file's"
        );
        let t = pts(&mp4);
        assert_eq!(t.len(), len);
        for (k, p) in t.iter().enumerate() {
            assert!(
                (p - k as f64 / fps).abs() < 1e-4,
                "episode {i} frame {k} at {p}"
            );
        }
        at += len;
    }
    assert_eq!(at, all.len());
    // the v3.0 videos are stream-copied, never re-encoded: same codec, no new encoder run
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(v21.join("videos/chunk-000/observation.images.cam/episode_000000.mp4"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        info["features"]["observation.images.cam"]["info"]["video.codec"]
            .as_str()
            .unwrap()
    );
    // back to v3.0: the same tables, and the same decoded frames (the MP4s joined again by
    // stream copy)
    let back = dir.join("back");
    ok(&["convert-format", s(&v21), "-o", s(&back), "--to", "v3.0"]);
    assert!(bag2dataset::dataset::validate(&back).unwrap().is_empty());
    assert_eq!(
        table(&files_with(&v30.join("data"), "parquet")),
        table(&files_with(&back.join("data"), "parquet"))
    );
    assert_eq!(
        table(&files_with(&v30.join("meta/episodes"), "parquet")),
        table(&files_with(&back.join("meta/episodes"), "parquet")),
        "episodes rows (video spans and stats included)"
    );
    assert_eq!(
        json(&v30.join("meta/info.json")),
        json(&back.join("meta/info.json"))
    );
    assert_eq!(
        json(&v30.join("meta/stats.json")),
        json(&back.join("meta/stats.json"))
    );
    let back_videos = files_with(&back.join("videos"), "mp4");
    assert_eq!(back_videos.len(), src.len());
    let mut again = Vec::new();
    for f in &back_videos {
        again.extend(frame_md5s(f));
    }
    assert_eq!(again, all, "decoded frames after v3.0 -> v2.1 -> v3.0");
    // a truncated episode video is caught by validate
    let broken = dir.join("broken");
    std::fs::rename(&v21, &broken).unwrap();
    let victim = broken.join("videos/chunk-000/observation.images.cam/episode_000001.mp4");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&victim)
        .args(["-frames:v", "10", "-c", "copy", "-y"])
        .arg(dir.join("short.mp4"))
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::rename(dir.join("short.mp4"), &victim).unwrap();
    let problems = validate_v21(&broken).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("episode_000001.mp4") && p.contains("frames")),
        "{problems:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn video_convert_format_v21_directly() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("videoconv");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    camera_bag(&inputs.join("a.bag"), 40, 1);
    camera_bag(&inputs.join("b.bag"), 33, 2);
    let cfg = dir.join("video.toml");
    std::fs::write(&cfg, video_config()).unwrap();
    let one = dir.join("one");
    convert_v21(&inputs, &one, &["-c", s(&cfg)]);
    assert_valid(&one);
    // nightly: one bag, then the other
    let nightly = dir.join("nightly");
    convert_v21(&inputs.join("a.bag"), &nightly, &["-c", s(&cfg)]);
    convert_v21(&inputs, &nightly, &["-c", s(&cfg)]);
    assert_byte_identical(&one, &nightly);
    std::fs::remove_dir_all(&dir).ok();
}

// ---- lerobot ----

fn venv(var: &str, default: &str) -> Option<String> {
    let python = std::env::var(var).unwrap_or_else(|_| default.to_string());
    if Path::new(&python).exists() {
        Some(python)
    } else {
        eprintln!("SKIPPED: no lerobot venv at {python} (set {var}); lerobot load checks not run");
        None
    }
}

fn check_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lerobot_v21_check.py")
}

fn run_check(python: &str, datasets: &[&Path]) {
    let o = Command::new(python)
        .arg(check_script())
        .args(datasets)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}");
    assert!(
        o.status.success(),
        "lerobot check failed:\n{out}\n{}",
        stderr(&o)
    );
    assert_eq!(out.matches("OK: ").count(), datasets.len(), "{out}");
}

/// Three Kuavo-like bags written by ../shared/tools/gen_bag.py (with its venv), or None.
fn kuavo_bags(dir: &Path) -> Option<PathBuf> {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_bag.py");
    let python =
        std::env::var("GENBAG_PYTHON").unwrap_or_else(|_| "/tmp/genvenv/bin/python".into());
    if !tool.exists() || !Path::new(&python).exists() {
        eprintln!(
            "SKIPPED (Kuavo part): needs {} and {python} (set GENBAG_PYTHON)",
            tool.display()
        );
        return None;
    }
    let inputs = dir.join("kuavo");
    std::fs::create_dir_all(&inputs).unwrap();
    for seed in 1..=3 {
        let o = Command::new(&python)
            .arg(&tool)
            .args([
                "--kuavo-types",
                "--duration",
                "5",
                "--seed",
                &seed.to_string(),
            ])
            .arg(inputs.join(format!("kuavo_{seed}.bag")))
            .output()
            .unwrap();
        assert!(o.status.success(), "gen_bag.py: {}", stderr(&o));
    }
    Some(inputs)
}

#[test]
fn lerobot_033_loads_v21_outputs_and_044_loads_the_round_trip() {
    let Some(py033) = venv("LEROBOT033_PYTHON", "/tmp/v21-venv/bin/python") else {
        return;
    };
    let dir = tmp("lerobot");
    let demo = dir.join("demo21");
    convert_v21(&demo_bag(), &demo, &[]);
    let mut sets: Vec<PathBuf> = vec![demo.clone()];
    if let Some(kin) = kuavo_bags(&dir) {
        let kuavo = dir.join("kuavo21");
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kuavo.toml");
        convert_v21(&kin, &kuavo, &["-c", s(&cfg), "--max-memory", "256MiB"]);
        assert_valid(&kuavo);
        assert_eq!(json(&kuavo.join("meta/info.json"))["total_episodes"], 3);
        sets.push(kuavo);
    }
    if ffmpeg_present() {
        let v30 = video_v30(&dir);
        let v21 = dir.join("video21");
        ok(&["convert-format", s(&v30), "-o", s(&v21), "--to", "v2.1"]);
        sets.push(v21);
    }
    let refs: Vec<&Path> = sets.iter().map(|p| p.as_path()).collect();
    run_check(&py033, &refs);
    // v3.0 → v2.1 → v3.0, loaded by lerobot 0.4.4
    if let Some(py044) = venv("LEROBOT_PYTHON", "/tmp/lerobotvenv/bin/python") {
        let back = dir.join("back30");
        ok(&["convert-format", s(&demo), "-o", s(&back), "--to", "v3.0"]);
        let mut backs = vec![back];
        let video21 = dir.join("video21");
        if video21.exists() {
            let vback = dir.join("videoback30");
            ok(&[
                "convert-format",
                s(&video21),
                "-o",
                s(&vback),
                "--to",
                "v3.0",
            ]);
            backs.push(vback);
        }
        let refs: Vec<&Path> = backs.iter().map(|p| p.as_path()).collect();
        run_check(&py044, &refs);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Same rows, episodes, tasks, info and stats (the conversion logs of a merge and of one run
/// differ in how they were made).
fn assert_same_v21(a: &Path, b: &Path) {
    assert_eq!(
        table(&files_with(&a.join("data"), "parquet")),
        table(&files_with(&b.join("data"), "parquet")),
        "data rows"
    );
    for f in ["info.json", "stats.json"] {
        assert_eq!(
            json(&a.join("meta").join(f)),
            json(&b.join("meta").join(f)),
            "{f}"
        );
    }
    for f in ["episodes.jsonl", "episodes_stats.jsonl", "tasks.jsonl"] {
        assert_eq!(
            jsonl(&a.join("meta").join(f)),
            jsonl(&b.join("meta").join(f)),
            "{f}"
        );
    }
    // the episode parquet files themselves are byte-identical
    let (fa, fb) = (
        files_with(&a.join("data"), "parquet"),
        files_with(&b.join("data"), "parquet"),
    );
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} differs",
            x.display()
        );
    }
}

#[test]
fn jobs_and_shards_then_merge_equal_one_run() {
    let dir = tmp("jobs");
    let inputs = make_bags(&dir, 4);
    let one = dir.join("one");
    convert_v21(&inputs, &one, &["--jobs", "1"]);
    // --jobs 2: children convert shares into the work dataset, merged, then laid out
    let jobs = dir.join("jobs2");
    convert_v21(&inputs, &jobs, &["--jobs", "2", "--max-memory", "128MiB"]);
    assert_valid(&jobs);
    assert_same_v21(&one, &jobs);
    // --shard K/N writes v2.1 shards; merge joins them (through v3.0) into one v2.1 dataset
    let mut shards = Vec::new();
    for k in 1..=2 {
        let out = dir.join(format!("shard{k}"));
        let spec = format!("{k}/2");
        convert_v21(&inputs, &out, &["--jobs", "1", "--shard", &spec]);
        assert_valid(&out);
        shards.push(out);
    }
    let merged = dir.join("merged");
    ok(&[
        "merge",
        s(&shards[0]),
        s(&shards[1]),
        "-o",
        s(&merged),
        "-q",
    ]);
    assert_valid(&merged);
    assert_same_v21(&one, &merged);
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".v21-") || n.ends_with(".lock") || n.ends_with(".jobs"))
        .collect();
    assert!(left.is_empty(), "left behind {left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---- memory ----

/// A bag with one 30 Hz camera of `frames` noisy 128×96 JPEGs (~20 KB each, so the episode is
/// tens of MB) and a joint topic.
fn noisy_bag(path: &Path, frames: u32) {
    let opts = BagWriterOptions::with_compression(Compression::None);
    let mut w = BagWriter::create(path, opts).unwrap();
    let (cams, js) = cameras_and_joints(&mut w, &["/cam/image/compressed"], "/arm/joint_states");
    let names = joint_names(3);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for k in 0..frames {
        let t = u64::from(k) * 1_000_000_000 / 30;
        let abs = START + t;
        let px: Vec<u8> = (0..W * H * 3)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 56) as u8
            })
            .collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode(&px, W, H, image::ExtendedColorType::Rgb8)
            .unwrap();
        let p = compressed_image(k, abs, &jpeg);
        w.write(cams[0], abs, p.as_slice()).unwrap();
        let p = joint_positions(k, abs, &names, &[t as f64 / 1e9, 1.0, 2.0]);
        w.write(js, abs + 1_000_000, p.as_slice()).unwrap();
    }
    w.finish().unwrap();
}

/// Runs the binary and samples its peak RSS (`VmHWM`) until it exits; (status, peak bytes).
fn peak_rss(args: &[&str]) -> (Option<i32>, u64) {
    let mut child = bin_cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kib * 1024);
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code(), peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn layout_never_holds_an_episode_whole() {
    let dir = tmp("memory");
    noisy_bag(&dir.join("noisy.bag"), 2400);
    let v30 = dir.join("v30");
    ok(&[
        "convert",
        s(&dir.join("noisy.bag")),
        "-o",
        s(&v30),
        "-q",
        "--max-memory",
        "256MiB",
    ]);
    let episode: u64 = files_with(&v30.join("data"), "parquet")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let ceiling: u64 = 40 << 20;
    assert!(
        episode > ceiling,
        "the episode ({episode} bytes) must be larger than the ceiling"
    );
    let v21 = dir.join("v21");
    let (code, peak) = peak_rss(&[
        "convert-format",
        s(&v30),
        "-o",
        s(&v21),
        "--to",
        "v2.1",
        "--max-memory",
        "40MiB",
    ]);
    assert_eq!(code, Some(0));
    assert_valid(&v21);
    eprintln!(
        "v3.0 -> v2.1 of a {episode}-byte episode: peak RSS {peak} bytes under a ceiling of {ceiling}"
    );
    assert!(peak < ceiling, "peak RSS {peak} over the ceiling {ceiling}");
    let back = dir.join("back");
    let (code, peak) = peak_rss(&[
        "convert-format",
        s(&v21),
        "-o",
        s(&back),
        "--to",
        "v3.0",
        "--max-memory",
        "40MiB",
    ]);
    assert_eq!(code, Some(0));
    eprintln!("v2.1 -> v3.0: peak RSS {peak} bytes");
    assert!(peak < ceiling, "peak RSS {peak} over the ceiling {ceiling}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A video dataset's layout plans its ffmpeg stream copy: a ceiling without room for it is
/// refused before any work, naming the minimum; the default holds it.
#[test]
fn video_convert_format_plans_its_ffmpeg_copy() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("videoceiling");
    let v30 = dir.join("v30");
    ok(&["convert", s(&demo_bag()), "-o", s(&v30), "--video", "-q"]);
    let small = dir.join("small");
    let o = bin(&[
        "convert-format",
        s(&v30),
        "-o",
        s(&small),
        "--to",
        "v2.1",
        "--max-memory",
        "40MiB",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("ffmpeg stream copy") && e.contains("pass at least --max-memory"),
        "{e}"
    );
    assert!(!small.exists());
    ok(&[
        "convert-format",
        s(&v30),
        "-o",
        s(&dir.join("v21")),
        "--to",
        "v2.1",
    ]);
    std::fs::remove_dir_all(&dir).ok();
}
