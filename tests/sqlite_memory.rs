//! A `.db3` of large messages (1 MiB camera frames, larger than two read units) converts at a
//! small `--max-memory` with the peak resident memory of the whole process tree, measured
//! from outside through /proc while it runs, under that ceiling. The bound is the tool's own
//! promise (the ceiling), so it holds on any machine; the dataset must hold every frame, so
//! the run cannot pass by doing less.

#[path = "common/db3.rs"]
mod db3;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use db3::{Db3, compressed_image, joint_state, padded_jpeg};

const BIN: &str = env!("CARGO_BIN_EXE_bag2dataset");
const T0: u64 = 1_700_000_000_000_000_000;

/// Camera frames of 1 MiB (two 512 KiB read units each): 30 Hz for [`SECONDS`].
const FRAME_BYTES: usize = 1 << 20;
const SECONDS: u64 = 4;
/// The ceiling under test: small next to the 120 MiB of frames, and not more than the
/// default 64 MiB.
const CEILING_MIB: u64 = 40;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("b2d-sqlmem-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `VmRSS` and `VmHWM` of `pid`, KiB (None once it is gone).
fn rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Every descendant of `pid` (threads' children included).
fn descendants(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let Ok(kids) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            out.push(k);
            descendants(k, out);
        }
    }
}

/// Runs `cmd`, sampling the summed RSS of its process tree every 2 ms (and the main
/// process's own high-water mark, which catches a peak between samples). Returns the exit
/// status, its stderr and the peak in KiB.
fn run_measured(cmd: &mut Command) -> (std::process::ExitStatus, String, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut peak = 0u64;
    loop {
        if let Some((main_rss, hwm)) = rss(pid) {
            let mut kids = Vec::new();
            descendants(pid, &mut kids);
            let tree = main_rss
                + kids
                    .iter()
                    .filter_map(|&k| rss(k))
                    .map(|r| r.0)
                    .sum::<u64>();
            peak = peak.max(tree).max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err)
                .ok();
            return (status, err, peak);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A camera of 1 MiB frames at 30 Hz and joint states at 200 Hz; rows inserted camera
/// first, so row order is not time order either.
fn write_large_db3(path: &Path) -> u64 {
    let db = Db3::create(path, true);
    db.topic(
        1,
        "/cam/image/compressed",
        "sensor_msgs/msg/CompressedImage",
    );
    db.topic(2, "/arm/joint_states", "sensor_msgs/msg/JointState");
    let tx = db.db.unchecked_transaction().unwrap();
    let mut row = 0i64;
    let frames = SECONDS * 30;
    for k in 0..frames {
        let t = T0 + k * 1_000_000_000 / 30;
        row += 1;
        let jpeg = padded_jpeg((k * 7 % 200) as u8 + 20, FRAME_BYTES);
        db.message(row, 1, t, &compressed_image(t, &jpeg));
    }
    for k in 0..SECONDS * 200 {
        let t = T0 + k * 5_000_000;
        row += 1;
        db.message(row, 2, t, &joint_state(t, &[k as f64, 1.0, 2.0]));
    }
    tx.commit().unwrap();
    frames
}

#[test]
fn large_messages_convert_under_a_small_ceiling_measured_from_outside() {
    let dir = tmp("large");
    let db3 = dir.join("large.db3");
    let frames = write_large_db3(&db3);
    assert!(std::fs::metadata(&db3).unwrap().len() > frames * FRAME_BYTES as u64);
    let out = dir.join("out");
    let (status, err, peak_kib) = run_measured(
        Command::new(BIN)
            .args(["convert", "--quiet", "--max-memory"])
            .arg(format!("{CEILING_MIB}MiB"))
            .arg(&db3)
            .arg("-o")
            .arg(&out),
    );
    assert!(status.success(), "convert failed: {err}");
    let ceiling_kib = CEILING_MIB * 1024;
    eprintln!("peak tree RSS {peak_kib} KiB at a ceiling of {ceiling_kib} KiB");
    assert!(
        peak_kib <= ceiling_kib,
        "peak tree RSS {peak_kib} KiB over the {ceiling_kib} KiB ceiling"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    let total = info["total_frames"].as_u64().expect("total_frames");
    // One frame per camera frame (the timeline is the camera), give or take the edges.
    assert!(
        total + 2 >= frames && total <= frames,
        "{total} dataset frames from {frames} camera frames"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
