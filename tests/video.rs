//! Video features end to end: synthetic bags whose JPEG frames vary smoothly are converted with
//! `storage = "video"`, and the MP4 files are checked with ffprobe (frame count, size, fps,
//! every frame's timestamp) and decoded back with ffmpeg to compare with the source images
//! (PSNR). Episodes sharing a file, files rolling over by size, the other codecs, a missing and
//! a dying ffmpeg, and (when the lerobot venv exists) lerobot decoding frames are covered too.
//!
//! Every test prints `SKIPPED` and passes when `ffmpeg`/`ffprobe` are not installed (`.ci/run`
//! installs them).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, Float64Array, Int64Array};
use bag2dataset::convert::config::ConvertConfig;
use bag2dataset::convert::run::{RunOptions, run};
use bag2dataset::dataset::video::{TICKS_PER_FRAME, VideoCodec, VideoOptions};
use bag2dataset::dataset::{
    DatasetSpec, DatasetWriter, FeatureKind, FeatureSpec, FeatureValue, Frame, ImageFormat,
    WriterOptions,
};
use common::bags::cam_and_state_config;
use common::cli::{BIN, ffmpeg_present, run_python_script, tmp};
use common::same::psnr;
use common::{CameraBag, frame_rgb, jpeg};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Frame size of the synthetic camera.
const W: u32 = common::FRAME_W;
const H: u32 = common::FRAME_H;
/// Smallest accepted PSNR of a decoded frame against its source JPEG, in dB (AV1 at crf 30 on
/// smooth 128×96 content gives about 38–42 dB; a wrong frame order or a colour swap gives
/// under 20).
const MIN_PSNR_DB: f64 = 30.0;
const KEY: &str = "observation.images.cam";

/// The source frames as the converter sees them: the JPEGs decoded.
fn decoded_source(frames: u32, seed: u32) -> Vec<Vec<u8>> {
    (0..frames)
        .map(|k| {
            image::load_from_memory(&jpeg(&frame_rgb(k, seed)))
                .expect("decodes")
                .into_rgb8()
                .into_raw()
        })
        .collect()
}

/// A bag with a 30 Hz camera of `frames` varying JPEG frames and a 100 Hz joint topic.
fn camera_bag(path: &Path, frames: u32, seed: u32) {
    CameraBag {
        chunk_threshold: 256 * 1024,
        ..CameraBag::new(frames, seed)
    }
    .write(path);
}

/// Video storage of the camera (as [`KEY`]) and the joint positions; `extra` top-level keys.
fn video_config(extra: &str) -> ConvertConfig {
    cam_and_state_config(&format!(
        "timeline = \"/cam/image/compressed\"\nstorage = \"video\"\n{extra}"
    ))
}

fn opts(inputs: Vec<PathBuf>, output: PathBuf, cfg: ConvertConfig) -> RunOptions {
    RunOptions {
        inputs,
        output,
        config: Some(cfg),
        // In-process runs share the test binary's memory with the other tests; the ceiling is
        // checked in a process of its own below.
        ceiling: 1 << 30,
        ..RunOptions::default()
    }
}

/// What ffprobe says of a video's stream and every frame's pts.
struct Probe {
    codec: String,
    width: u32,
    height: u32,
    pix_fmt: String,
    rate: String,
    time_base: String,
    pts: Vec<i64>,
}

fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt,r_frame_rate,time_base",
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=pts", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let pts = String::from_utf8(frames.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    Probe {
        codec: get("codec_name"),
        width: get("width").parse().unwrap(),
        height: get("height").parse().unwrap(),
        pix_fmt: get("pix_fmt"),
        rate: get("r_frame_rate"),
        time_base: get("time_base"),
        pts,
    }
}

/// Every frame of a video as packed RGB, decoded by ffmpeg.
fn decode_all(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg decodes {}", path.display());
    out.stdout
        .chunks((W * H * 3) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Per episode: (length, chunk, file, from, to) of the video feature `key`.
fn episode_videos(ds: &Path, key: &str) -> Vec<(i64, i64, i64, f64, f64)> {
    let f = File::open(ds.join("meta/episodes/chunk-000/file-000.parquet")).unwrap();
    let mut out = Vec::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let int = |c: &str| {
            b.column_by_name(c)
                .unwrap_or_else(|| panic!("column {c}"))
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let float = |c: &str| {
            b.column_by_name(c)
                .unwrap_or_else(|| panic!("column {c}"))
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let (len, ch, fi) = (
            int("length"),
            int(&format!("videos/{key}/chunk_index")),
            int(&format!("videos/{key}/file_index")),
        );
        let (from, to) = (
            float(&format!("videos/{key}/from_timestamp")),
            float(&format!("videos/{key}/to_timestamp")),
        );
        for r in 0..b.num_rows() {
            out.push((
                len.value(r),
                ch.value(r),
                fi.value(r),
                from.value(r),
                to.value(r),
            ));
        }
    }
    out
}

fn video_file(ds: &Path, key: &str, chunk: usize, file: usize) -> PathBuf {
    ds.join(bag2dataset::dataset::video_file_path(key, chunk, file))
}

fn assert_valid(ds: &Path) {
    let problems = bag2dataset::dataset::validate(ds).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn video_of_a_synthetic_bag_has_exact_frames_size_fps_timestamps_and_quality() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("single");
    let bag = dir.join("cam.bag");
    camera_bag(&bag, 60, 0);
    let out = dir.join("ds");
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, video_config("").to_toml()).unwrap();
    // A process of its own, so that its peak RSS is the conversion's. The ceiling covers the
    // ffmpeg encoder too: 48 MiB for the converter and one encoder's planned memory.
    let one_encoder = bag2dataset::dataset::video::encoders::encoder_bytes(VideoCodec::Av1, W, H);
    let ceiling = (48 << 20) + one_encoder;
    let r = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", "-q", "--json", "--max-memory"])
        .arg(ceiling.to_string())
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&bag)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["frames"], 60);
    assert_valid(&out);

    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    let feat = &info["features"][KEY];
    assert_eq!(feat["dtype"], "video");
    assert_eq!(feat["shape"], serde_json::json!([H, W, 3]));
    assert_eq!(feat["info"]["video.codec"], "av1");
    assert_eq!(feat["info"]["video.pix_fmt"], "yuv420p");
    assert_eq!(feat["info"]["video.fps"], 30);
    assert_eq!(feat["info"]["has_audio"], false);
    assert_eq!(
        info["video_path"],
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
            .replace(".parquet", ".mp4")
    );
    // No parquet column for the video feature, and no `huggingface` entry either.
    let data = File::open(out.join("data/chunk-000/file-000.parquet")).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(data).unwrap();
    assert!(b.schema().field_with_name(KEY).is_err());
    assert!(!b.schema().metadata()["huggingface"].contains(KEY));
    // Stats of the video feature, computed from the sampled frames like images: [3,1,1].
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats[KEY]["mean"].as_array().unwrap().len(), 3);
    assert_eq!(stats[KEY]["count"], serde_json::json!([60]));

    let file = video_file(&out, KEY, 0, 0);
    let p = probe(&file);
    assert_eq!(
        (p.codec.as_str(), p.width, p.height, p.pix_fmt.as_str()),
        ("av1", W, H, "yuv420p")
    );
    assert_eq!(p.rate, "30/1");
    assert_eq!(p.time_base, format!("1/{}", 30 * TICKS_PER_FRAME));
    let want: Vec<i64> = (0..60).map(|i| i * TICKS_PER_FRAME as i64).collect();
    assert_eq!(p.pts, want, "frame i at exactly i/fps");

    let decoded = decode_all(&file);
    let source = decoded_source(60, 0);
    assert_eq!(decoded.len(), 60);
    let scores: Vec<f64> = decoded
        .iter()
        .zip(&source)
        .map(|(d, s)| psnr(d, s))
        .collect();
    let worst = scores.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "PSNR over 60 frames: min {worst:.1} dB, mean {:.1} dB",
        scores.iter().sum::<f64>() / 60.0
    );
    assert!(worst >= MIN_PSNR_DB, "PSNR {worst:.1} dB < {MIN_PSNR_DB}");
    // Shifted by one frame the match is much worse: the order is right.
    assert!(psnr(&decoded[10], &source[11]) < worst.min(psnr(&decoded[10], &source[10])) - 3.0);

    // Memory: the run stayed under its ceiling, the video queue under its budget.
    let m = &report["memory"];
    let (peak, tree, reported_ceiling) = (
        m["peak_rss"].as_u64().unwrap(),
        m["peak_tree_rss"].as_u64().unwrap(),
        m["ceiling"].as_u64().unwrap(),
    );
    println!("peak RSS {peak} bytes, tree {tree}, ceiling {ceiling}");
    assert!(peak > 0 && tree > peak && tree <= ceiling && reported_ceiling == ceiling);
    // The converter stays within what the encoder leaves it.
    assert!(peak <= 48 << 20, "{peak}");
    let v = m["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "video frames in flight")
        .expect("video budget reported");
    let (vpeak, vcap, vlargest) = (
        v["peak"].as_u64().unwrap(),
        v["capacity"].as_u64().unwrap(),
        v["largest_item"].as_u64().unwrap(),
    );
    assert!(vpeak > 0 && vpeak <= vcap, "{v}");
    assert!(vlargest >= u64::from(W * H * 3), "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn two_episodes_share_one_file_with_consecutive_timestamps() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("two");
    let (a, b) = (dir.join("a.bag"), dir.join("b.bag"));
    camera_bag(&a, 37, 1);
    camera_bag(&b, 23, 2);
    let out = dir.join("ds");
    let report = run(&opts(vec![a, b], out.clone(), video_config(""))).expect("converts");
    assert_eq!((report.episodes, report.frames), (2, 60));
    assert_valid(&out);
    let eps = episode_videos(&out, KEY);
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0], (37, 0, 0, 0.0, 37.0 / 30.0));
    assert_eq!(eps[1], (23, 0, 0, 37.0 / 30.0, 60.0 / 30.0));
    let file = video_file(&out, KEY, 0, 0);
    let p = probe(&file);
    let want: Vec<i64> = (0..60).map(|i| i * TICKS_PER_FRAME as i64).collect();
    assert_eq!(p.pts, want, "exact timestamps across the episode boundary");
    assert_eq!(p.rate, "30/1");
    let decoded = decode_all(&file);
    let (sa, sb) = (decoded_source(37, 1), decoded_source(23, 2));
    for (i, s) in sa.iter().chain(&sb).enumerate() {
        let q = psnr(&decoded[i], s);
        assert!(q >= MIN_PSNR_DB, "frame {i}: PSNR {q:.1} dB");
    }
    assert!(!dir.join("ds").join(".video-segments").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// A dataset written through the library with two cameras (h264 and hevc) and a tiny file size:
/// every episode starts a new file of each camera, at timestamp 0.
#[test]
fn files_roll_over_by_size_and_h264_hevc_have_exact_timestamps() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("roll");
    let out = dir.join("ds");
    let cam = |name: &str, codec| FeatureSpec {
        name: name.into(),
        kind: FeatureKind::Video {
            height: H,
            width: W,
            channels: 3,
            codec,
        },
    };
    let spec = DatasetSpec {
        fps: 15,
        robot_type: None,
        features: vec![
            cam("observation.images.a", VideoCodec::H264),
            cam("observation.images.b", VideoCodec::Hevc),
            FeatureSpec {
                name: "observation.state".into(),
                kind: FeatureKind::Vector {
                    len: 1,
                    names: None,
                },
            },
        ],
    };
    let opts = WriterOptions {
        chunks_size: 2,
        video: VideoOptions {
            file_bytes: 1,
            ..VideoOptions::default()
        },
        ..WriterOptions::default()
    };
    let mut w = DatasetWriter::create(&out, spec, opts).unwrap();
    let lengths = [9u32, 5, 7];
    for (e, n) in lengths.iter().enumerate() {
        w.begin_episode("roll", *n as usize).unwrap();
        for k in 0..*n {
            let img = |seed| FeatureValue::Image {
                bytes: jpeg(&frame_rgb(k, seed)).into(),
                format: ImageFormat::Jpeg,
            };
            w.push_frame(Frame {
                values: vec![
                    img(e as u32),
                    img(e as u32 + 5),
                    FeatureValue::Vector(vec![k as f32]),
                ],
            })
            .unwrap();
        }
        w.end_episode().unwrap();
    }
    // An aborted episode leaves nothing behind.
    w.begin_episode("doomed", 3).unwrap();
    w.push_frame(Frame {
        values: vec![
            FeatureValue::Image {
                bytes: jpeg(&frame_rgb(0, 9)).into(),
                format: ImageFormat::Jpeg,
            },
            FeatureValue::Image {
                bytes: jpeg(&frame_rgb(0, 9)).into(),
                format: ImageFormat::Jpeg,
            },
            FeatureValue::Vector(vec![0.0]),
        ],
    })
    .unwrap();
    w.abort_episode();
    w.finish().unwrap();
    assert_valid(&out);
    for (key, codec) in [
        ("observation.images.a", "h264"),
        ("observation.images.b", "hevc"),
    ] {
        let eps = episode_videos(&out, key);
        // chunks_size 2: files (0,0), (0,1), (1,0)
        let places: Vec<(i64, i64)> = eps.iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(places, [(0, 0), (0, 1), (1, 0)], "{key}");
        for (i, e) in eps.iter().enumerate() {
            assert_eq!(e.0, i64::from(lengths[i]));
            assert_eq!((e.3, e.4), (0.0, f64::from(lengths[i]) / 15.0));
            let file = video_file(&out, key, e.1 as usize, e.2 as usize);
            let p = probe(&file);
            assert_eq!(p.codec, codec);
            assert_eq!(p.rate, "15/1");
            let want: Vec<i64> = (0..e.0).map(|i| i * TICKS_PER_FRAME as i64).collect();
            assert_eq!(p.pts, want, "{key} episode {i}");
            let decoded = decode_all(&file);
            let seed = i as u32 + if codec == "hevc" { 5 } else { 0 };
            for (k, d) in decoded.iter().enumerate() {
                let q = psnr(d, &decoded_source(lengths[i], seed)[k]);
                assert!(q >= MIN_PSNR_DB, "{key} ep {i} frame {k}: {q:.1} dB");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_ffmpeg_fails_before_any_work_with_the_install_hint() {
    let dir = tmp("missing");
    let bag = dir.join("cam.bag");
    camera_bag(&bag, 10, 0);
    let out = dir.join("ds");
    let r = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", "--video", "-q", "-o"])
        .arg(&out)
        .arg(&bag)
        .env("BAG2DATASET_FFMPEG", dir.join("no-such-ffmpeg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apt-get install ffmpeg") && stderr.contains("no-such-ffmpeg"),
        "{stderr}"
    );
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "only the bag: {left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An ffmpeg that dies in the middle of the second episode: that episode is aborted and
/// reported, the first one is published with its complete video (exit 3).
#[test]
fn an_ffmpeg_dying_mid_episode_aborts_only_that_episode() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("dying");
    let (a, b) = (dir.join("a.bag"), dir.join("b.bag"));
    camera_bag(&a, 20, 1);
    camera_bag(&b, 40, 2);
    let script = dir.join("ffmpeg-dies");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         case \"$*\" in\n\
         *-000001.mp4*) head -c 200000 >/dev/null; echo 'simulated encoder crash' >&2; exit 1;;\n\
         esac\n\
         exec ffmpeg \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.join("conv.toml");
    std::fs::write(&cfg, video_config("").to_toml()).unwrap();
    let out = dir.join("ds");
    let r = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["convert", "-q", "-c"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .env("BAG2DATASET_FFMPEG", &script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(3), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let err = report["bags"][1]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("simulated encoder crash") && err.contains(KEY),
        "{err}"
    );
    assert_eq!(report["episodes"], 1);
    assert_valid(&out);
    let eps = episode_videos(&out, KEY);
    assert_eq!(eps, [(20, 0, 0, 0.0, 20.0 / 30.0)]);
    assert_eq!(probe(&video_file(&out, KEY, 0, 0)).pts.len(), 20);
    std::fs::remove_dir_all(&dir).ok();
}

/// lerobot (the venv named by LEROBOT_PYTHON, default /tmp/lerobotvenv/bin/python) loads the
/// dataset and decodes the frames at the first, middle and last timestamp of each episode.
#[test]
fn lerobot_decodes_first_middle_and_last_frames() {
    if !ffmpeg_present() {
        return;
    }
    let python = std::env::var("LEROBOT_PYTHON")
        .unwrap_or_else(|_| "/tmp/lerobotvenv/bin/python".to_string());
    if !Path::new(&python).exists() {
        eprintln!("SKIPPED: no lerobot venv at {python} (set LEROBOT_PYTHON)");
        return;
    }
    let dir = tmp("lerobot");
    let (a, b) = (dir.join("a.bag"), dir.join("b.bag"));
    camera_bag(&a, 31, 1);
    camera_bag(&b, 17, 2);
    let out = dir.join("ds");
    run(&opts(vec![a, b], out.clone(), video_config(""))).expect("converts");
    let (ok, text) = run_python_script(
        &python,
        "lerobot_video_frames.py",
        &[&out],
        &dir.join("hf-cache"),
    );
    println!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("OK: 6 frames decoded"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Appending continues each camera's last file (its frames keep consecutive timestamps) until
/// the next episode would pass the size limit, then rolls to a new file, as one run would.
#[test]
fn append_continues_the_last_video_file_then_rolls_by_size() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("append-roll");
    let out = dir.join("ds");
    let spec = DatasetSpec {
        fps: 15,
        robot_type: None,
        features: vec![
            FeatureSpec {
                name: KEY.into(),
                kind: FeatureKind::Video {
                    height: H,
                    width: W,
                    channels: 3,
                    codec: VideoCodec::H264,
                },
            },
            FeatureSpec {
                name: "observation.state".into(),
                kind: FeatureKind::Vector {
                    len: 1,
                    names: None,
                },
            },
        ],
    };
    let lengths = [6u32, 4, 5, 3];
    let episode = |w: &mut DatasetWriter, e: usize| {
        w.begin_episode("t", lengths[e] as usize).unwrap();
        for k in 0..lengths[e] {
            w.push_frame(Frame {
                values: vec![
                    FeatureValue::Image {
                        bytes: jpeg(&frame_rgb(k, e as u32)).into(),
                        format: ImageFormat::Jpeg,
                    },
                    FeatureValue::Vector(vec![k as f32]),
                ],
            })
            .unwrap();
        }
        w.end_episode().unwrap();
    };
    let opts = |file_bytes| WriterOptions {
        video: VideoOptions {
            file_bytes,
            ..VideoOptions::default()
        },
        ..WriterOptions::default()
    };
    let mut w = DatasetWriter::create(&out, spec, opts(200 << 20)).unwrap();
    episode(&mut w, 0);
    episode(&mut w, 1);
    w.finish().unwrap();
    let first = std::fs::read(video_file(&out, KEY, 0, 0)).unwrap();
    // A second name for the published file's inode: an append must never write into it.
    let keep = dir.join("keep.mp4");
    std::fs::hard_link(video_file(&out, KEY, 0, 0), &keep).unwrap();
    // Room left: episode 2 joins file 0.
    let mut w = DatasetWriter::append(&out, opts(200 << 20)).unwrap();
    episode(&mut w, 2);
    w.finish().unwrap();
    // No room (a 1-byte limit): episode 3 starts file 1.
    let mut w = DatasetWriter::append(&out, opts(1)).unwrap();
    episode(&mut w, 3);
    w.finish().unwrap();
    assert_valid(&out);
    let eps = episode_videos(&out, KEY);
    let places: Vec<(i64, i64, i64)> = eps.iter().map(|e| (e.0, e.1, e.2)).collect();
    assert_eq!(places, [(6, 0, 0), (4, 0, 0), (5, 0, 0), (3, 0, 1)]);
    let ts: Vec<(f64, f64)> = eps.iter().map(|e| (e.3, e.4)).collect();
    assert_eq!(
        ts,
        [
            (0.0, 0.4),
            (0.4, 10.0 / 15.0),
            (10.0 / 15.0, 1.0),
            (0.0, 0.2)
        ]
    );
    // File 0 holds the three episodes at consecutive timestamps and the right frames.
    let file0 = video_file(&out, KEY, 0, 0);
    let p = probe(&file0);
    let want: Vec<i64> = (0..15).map(|i| i * TICKS_PER_FRAME as i64).collect();
    assert_eq!(p.pts, want);
    let decoded = decode_all(&file0);
    let mut k = 0;
    for (e, n) in lengths[..3].iter().enumerate() {
        let src = decoded_source(*n, e as u32);
        for s in &src {
            let q = psnr(&decoded[k], s);
            assert!(q >= MIN_PSNR_DB, "episode {e}: {q:.1} dB");
            k += 1;
        }
    }
    // The file published before the appends was never modified in place.
    assert_eq!(std::fs::read(&keep).unwrap(), first);
    assert!(first.len() < std::fs::metadata(&file0).unwrap().len() as usize);
    std::fs::remove_dir_all(&dir).ok();
}
