//! `merge` adopting contiguous shards whole (issue 12, merge cost): the merged dataset equals one
//! sequential run for image and video datasets (in any file layout), the first shard's data
//! files and every video file are hard links of the shards' (same inode), later shards' data
//! files are rewritten with raw feature chunks, a failed or killed merge leaves no half dataset,
//! the merge's process tree stays under a small `--max-memory` sampled from outside, and where
//! linking is not possible (another filesystem) the files are copied.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bag2dataset::convert::config::ConvertConfig;
use bag2dataset::convert::merge::{MergeOptions, merge};
use bag2dataset::convert::run::{RunOptions, run};
use bag2dataset::convert::select::Shard;
use common::bags::{cam_and_state_config, task_bags};
use common::cli::{BIN, ffmpeg_present, lerobot_pythons, run_python_script, tmp, tmp_in, tree_rss};
use common::read::files_with;
use common::same::assert_same_in_any_layout;
use common::{CameraBag, START};

fn image_config() -> ConvertConfig {
    cam_and_state_config("fps = 10\ntimeline = \"/cam/image/compressed\"")
}

/// `n` image bags of `seconds` each in `dir/in`, two tasks alternating (sidecar files).
fn image_bags(dir: &Path, n: u64, seconds: u64) -> PathBuf {
    task_bags(dir, n, seconds);
    dir.join("in")
}

fn run_opts(inputs: &Path, out: &Path, cfg: ConvertConfig, shard: Option<&str>) -> RunOptions {
    RunOptions {
        inputs: vec![inputs.to_path_buf()],
        output: out.to_path_buf(),
        config: Some(cfg),
        // In-process runs share the test binary's RSS with the tests beside them.
        ceiling: 1 << 30,
        shard: shard.map(|s| Shard::parse(s).unwrap()),
        ..RunOptions::default()
    }
}

/// One sequential run and `k` shards of the bags in `inputs`.
fn one_and_shards(
    dir: &Path,
    inputs: &Path,
    cfg: &ConvertConfig,
    k: usize,
) -> (PathBuf, Vec<PathBuf>) {
    let one = dir.join("one");
    run(&run_opts(inputs, &one, cfg.clone(), None)).unwrap();
    let shards = (1..=k)
        .map(|s| {
            let out = dir.join(format!("shard-{s}"));
            run(&run_opts(
                inputs,
                &out,
                cfg.clone(),
                Some(&format!("{s}/{k}")),
            ))
            .unwrap();
            out
        })
        .collect();
    (one, shards)
}

fn inode(p: &Path) -> (u64, u64) {
    let m = std::fs::metadata(p).unwrap();
    (m.dev(), m.ino())
}

fn merge_opts(inputs: &[PathBuf], out: &Path) -> MergeOptions {
    MergeOptions {
        inputs: inputs.to_vec(),
        output: out.to_path_buf(),
        buffer_bytes: 1 << 20,
        ..MergeOptions::default()
    }
}

#[test]
fn image_shards_adopted_whole_equal_one_run_first_shard_linked_others_renumbered() {
    let dir = tmp("image");
    // 7 bags of 3 s into 3 shards of 2 | 2 | 3 episodes (contiguous), two tasks.
    let inputs = image_bags(&dir, 7, 3);
    let (one, shards) = one_and_shards(&dir, &inputs, &image_config(), 3);
    let merged = dir.join("merged");
    let r = merge(&merge_opts(&shards, &merged)).unwrap();
    assert_eq!((r.episodes, r.datasets, r.tasks), (7, 3, 2));
    let whole = r.whole.expect("contiguous shards are adopted whole");
    let first_files = files_with(&shards[0].join("data"), "parquet");
    assert_eq!(whole.data_linked, first_files.len(), "{whole:?}");
    assert_eq!(whole.data_copied, 0, "{whole:?}");
    let later: usize = shards[1..]
        .iter()
        .map(|s| files_with(&s.join("data"), "parquet").len())
        .sum();
    assert_eq!(whole.data_renumbered, later, "{whole:?}");
    assert_same_in_any_layout(&one, &merged);

    // The first shard's files are the same inodes (2 links); the renumbered ones are new.
    let merged_files = files_with(&merged.join("data"), "parquet");
    assert_eq!(merged_files.len(), first_files.len() + later);
    for (m, s) in merged_files.iter().zip(&first_files) {
        assert_eq!(
            inode(m),
            inode(s),
            "{} is a link of {}",
            m.display(),
            s.display()
        );
        assert!(std::fs::metadata(m).unwrap().nlink() >= 2);
    }
    for m in &merged_files[first_files.len()..] {
        assert_eq!(std::fs::metadata(m).unwrap().nlink(), 1, "{}", m.display());
    }
    // Renumbered files keep the feature chunks byte for byte: the image column's compressed
    // size per row group equals the shard's.
    let sizes = |p: &Path| -> Vec<i64> {
        let f = std::fs::File::open(p).unwrap();
        let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
        use parquet::file::reader::FileReader;
        r.metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.column(0).compressed_size())
            .collect()
    };
    let second = files_with(&shards[1].join("data"), "parquet");
    assert_eq!(sizes(&merged_files[first_files.len()]), sizes(&second[0]));

    // A merged dataset goes on like any other: converting all bags into it has nothing to do.
    let rerun = run(&run_opts(&inputs, &merged, image_config(), None)).unwrap();
    assert_eq!(rerun.mode, "unchanged");
    // Shards in another order on the command line: the same dataset (episodes by bag).
    let reversed: Vec<PathBuf> = shards.iter().rev().cloned().collect();
    let m2 = dir.join("merged-reversed");
    let r = merge(&merge_opts(&reversed, &m2)).unwrap();
    assert!(r.whole.is_some());
    assert_same_in_any_layout(&one, &m2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bag with a 30 Hz camera of `frames` varying JPEG frames and a 100 Hz joint topic (third
/// joint at `seed`), starting `start_s` seconds after the shared start.
fn camera_bag(path: &Path, frames: u32, seed: u32, start_s: u64) {
    CameraBag {
        start: START + start_s * 1_000_000_000,
        third_joint: f64::from(seed),
        ..CameraBag::new(frames, seed)
    }
    .write(path);
}

/// Camera bags `dir/in/v-<k>.bag` of these frame counts (seed `k`, `k` × 100 s apart); the
/// input folder.
fn video_bags(dir: &Path, frames: &[u32]) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for (k, n) in frames.iter().enumerate() {
        camera_bag(
            &inputs.join(format!("v-{k}.bag")),
            *n,
            k as u32,
            k as u64 * 100,
        );
    }
    inputs
}

fn video_config() -> ConvertConfig {
    cam_and_state_config("timeline = \"/cam/image/compressed\"\nstorage = \"video\"")
}

#[test]
fn video_shards_adopted_whole_equal_one_run_in_any_layout_with_linked_videos() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("video");
    let inputs = video_bags(&dir, &[24, 30, 18, 27]);
    let (one, shards) = one_and_shards(&dir, &inputs, &video_config(), 2);
    // Through the binary, as a user merges: no ffmpeg runs, so the default ceiling does not
    // grow by the stream copy's share and a small one is not refused.
    let merged = dir.join("merged");
    let (o, outside) = sampled(
        Command::new(BIN)
            .arg("merge")
            .args(&shards)
            .arg("-o")
            .arg(&merged)
            .args(["--json", "--max-memory", "40MiB"]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // An ffmpeg (even `-encoders`) would add 40-50 MiB: the tree stayed at the merge's own.
    assert!(
        outside < 30 << 20,
        "tree peak from outside {outside}: {rep}"
    );
    assert_eq!(rep["episodes"], 4, "{rep}");
    let videos: Vec<PathBuf> = shards
        .iter()
        .flat_map(|s| files_with(&s.join("videos"), "mp4"))
        .collect();
    assert_eq!(rep["whole"]["videos_linked"], videos.len(), "{rep}");
    assert_eq!(rep["whole"]["videos_copied"], 0, "{rep}");
    assert_eq!(
        rep["memory"]["peak_children_rss"], 0,
        "no ffmpeg ran: {rep}"
    );
    assert_same_in_any_layout(&one, &merged);
    // Every video file of the merge is one of the shards' files (same inode), in shard order.
    let merged_videos = files_with(&merged.join("videos"), "mp4");
    assert_eq!(
        merged_videos.iter().map(|p| inode(p)).collect::<Vec<_>>(),
        videos.iter().map(|p| inode(p)).collect::<Vec<_>>()
    );
    // The sequential run holds each camera in one file; the merge one per shard.
    assert_eq!(files_with(&one.join("videos"), "mp4").len(), 1);
    assert_eq!(merged_videos.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_or_killed_merge_leaves_no_half_dataset_and_a_rerun_completes() {
    let dir = tmp("fail");
    let inputs = image_bags(&dir, 4, 3);
    let (one, shards) = one_and_shards(&dir, &inputs, &image_config(), 2);
    let staging_left = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
    };
    // Failure: the second shard's last data file is cut short (its footer is gone), found
    // after the first shard was already linked into the staging directory.
    let broken = dir.join("broken");
    copy_tree(&shards[1], &broken);
    let last = files_with(&broken.join("data"), "parquet").pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = dir.join("merged");
    let e = merge(&merge_opts(&[shards[0].clone(), broken.clone()], &out)).unwrap_err();
    assert!(e.to_string().contains("file-"), "names the file: {e}");
    assert!(!out.exists(), "nothing published");
    assert!(!staging_left(&dir), "staging removed");
    // The shards were not touched by the failed merge.
    assert!(
        bag2dataset::dataset::validate(&shards[0])
            .unwrap()
            .is_empty()
    );

    // Kill -9 at several points: the output is absent or complete, never half; a rerun
    // (recovering what the killed one left) gives the full dataset.
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        let out = dir.join(format!("killed-{delay_ms}"));
        let mut child = Command::new(BIN)
            .arg("merge")
            .args(&shards)
            .arg("-o")
            .arg(&out)
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if out.exists() {
            assert_same_in_any_layout(&one, &out);
            continue;
        }
        let o = Command::new(BIN)
            .arg("merge")
            .args(&shards)
            .arg("-o")
            .arg(&out)
            .arg("-q")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_same_in_any_layout(&one, &out);
        assert!(
            !staging_left(&dir),
            "the rerun removed the killed run's staging"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &to);
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
}

/// Runs `cmd`, sampling its process tree's summed RSS every 2 ms; its output and the peak.
fn sampled(cmd: &mut Command) -> (std::process::Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(tree_rss(pid));
        std::thread::sleep(Duration::from_millis(2));
        assert!(started.elapsed() < Duration::from_secs(120), "hangs");
    }
    (child.wait_with_output().unwrap(), peak)
}

#[test]
fn merge_stays_under_a_small_ceiling_sampled_from_outside() {
    let dir = tmp("memory");
    // Larger episodes: 4 bags of 20 s (30 Hz camera at 10 fps → 200 rows each).
    let inputs = image_bags(&dir, 4, 20);
    let (one, shards) = one_and_shards(&dir, &inputs, &image_config(), 4);
    let out = dir.join("merged");
    let ceiling: u64 = 32 << 20;
    let (o, peak) = sampled(
        Command::new(BIN)
            .arg("merge")
            .args(&shards)
            .arg("-o")
            .arg(&out)
            .args(["--json", "--max-memory", "32MiB"]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(peak > 0, "sampled");
    assert!(peak <= ceiling, "outside: {peak} > {ceiling}");
    let inside = rep["memory"]["peak_tree_rss"].as_u64().unwrap();
    assert!(inside <= ceiling, "{rep}");
    assert_eq!(rep["memory"]["ceiling"], ceiling, "{rep}");
    assert!(
        rep["whole"]["data_renumbered"].as_u64().unwrap() >= 3,
        "{rep}"
    );
    assert_same_in_any_layout(&one, &out);
    // Too small a ceiling is refused before any work, naming it.
    let o = Command::new(BIN)
        .arg("merge")
        .args(&shards)
        .arg("-o")
        .arg(dir.join("tiny"))
        .args(["--max-memory", "4MiB"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!dir.join("tiny").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn across_filesystems_files_are_copied_instead_of_linked() {
    // Shards on tmpfs, the output on the temp dir's filesystem (or the other way round).
    let shm = Path::new("/dev/shm");
    let tmpd = std::env::temp_dir();
    if !shm.is_dir()
        || std::fs::metadata(shm).unwrap().dev() == std::fs::metadata(&tmpd).unwrap().dev()
    {
        eprintln!(
            "SKIPPED: no second filesystem (/dev/shm on another device than {})",
            tmpd.display()
        );
        return;
    }
    let src = tmp_in(shm, "xfs-src");
    let dst = tmp("xfs-dst");
    let inputs = image_bags(&src, 4, 3);
    let (one, shards) = one_and_shards(&src, &inputs, &image_config(), 2);
    let out = dst.join("merged");
    let r = merge(&merge_opts(&shards, &out)).unwrap();
    let whole = r.whole.expect("adopted whole");
    let first = files_with(&shards[0].join("data"), "parquet").len();
    assert_eq!(
        (whole.data_linked, whole.data_copied),
        (0, first),
        "{whole:?}"
    );
    assert!(whole.data_renumbered > 0, "{whole:?}");
    for f in files_with(&out.join("data"), "parquet") {
        assert_eq!(std::fs::metadata(&f).unwrap().nlink(), 1);
    }
    assert_same_in_any_layout(&one, &out);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}

/// Two shards of the bags in `inputs` merged (adopted whole) into `dir/merged`; that and one
/// sequential run.
fn merged_whole(dir: &Path, inputs: &Path, cfg: &ConvertConfig) -> (PathBuf, PathBuf) {
    let (one, shards) = one_and_shards(dir, inputs, cfg, 2);
    let merged = dir.join("merged");
    assert!(
        merge(&merge_opts(&shards, &merged))
            .unwrap()
            .whole
            .is_some()
    );
    (merged, one)
}

#[test]
fn lerobot_0_4_and_0_6_load_merged_image_and_video_datasets_like_one_run() {
    let pythons = lerobot_pythons();
    if pythons.is_empty() {
        eprintln!("SKIPPED: no lerobot venv (see above)");
        return;
    }
    let dir = tmp("lerobot");
    let mut cases = Vec::new();
    let image_dir = dir.join("image");
    let inputs = image_bags(&image_dir, 5, 3);
    cases.push(merged_whole(&image_dir, &inputs, &image_config()));
    if ffmpeg_present() {
        let video_dir = dir.join("video");
        let inputs = video_bags(&video_dir, &[24, 30, 18]);
        cases.push(merged_whole(&video_dir, &inputs, &video_config()));
    }
    for py in &pythons {
        for (merged, one) in &cases {
            let (ok, text) = run_python_script(
                py,
                "lerobot_merge_check.py",
                &[merged, one],
                &dir.join("hf-cache"),
            );
            println!(
                "{py} {}: {}",
                merged.display(),
                text.lines().next().unwrap_or("")
            );
            assert!(ok, "{py} on {}: {text}", merged.display());
            assert!(
                text.contains("OK: ") && text.contains("items checked"),
                "{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
