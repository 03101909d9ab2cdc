//! Video runs under one ceiling for the whole process tree: the converter and its ffmpeg
//! children. Synthetic bags with three 640x480 cameras are converted by the binary while this
//! test samples the tree's RSS from outside (`/proc`, every 20 ms, like a cgroup or Slurm
//! would see it); the results are compared with an unconstrained run. Also: a ceiling too
//! small for one encoder fails before any work, and an encoder that loses a frame fails the
//! episode.
//!
//! Every test prints `SKIPPED` and passes when `ffmpeg`/`ffprobe` are not installed (`.ci/run`
//! installs them).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression};
use common::bags::{cameras_and_joints, compressed_image, joint_names, joint_positions, tri};
use common::cli::{BIN, descendants, ffmpeg_present, lerobot_pythons, rss, run_python_script, tmp};
use common::same::{INFO_TOTALS, assert_same_tables, data_placement_column, psnr};

pub const W: u32 = 640;
pub const H: u32 = 480;
pub const CAMS: [&str; 3] = ["cam_h", "cam_l", "cam_r"];

/// Frame `k` of camera `cam` of bag `seed`: smooth gradients with a moving square.
fn frame_jpeg(k: u32, cam: u32, seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((W * H * 3) as usize);
    let (sx, sy) = (
        (k * 9 + cam * 100) % (W - 80),
        (k * 5 + seed * 50) % (H - 80),
    );
    for y in 0..H {
        for x in 0..W {
            let inside = x >= sx && x < sx + 80 && y >= sy && y < sy + 80;
            if inside {
                px.extend_from_slice(&[230, 40 + 60 * cam as u8, 40]);
            } else {
                px.push(tri(x / 2 + k * 5 + seed * 40 + cam * 30));
                px.push(tri(y / 2 + k * 3 + seed * 70));
                px.push(tri((x + y) / 3 + k * 7 + cam * 90));
            }
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode(&px, W, H, image::ExtendedColorType::Rgb8)
        .expect("jpeg encodes");
    out
}

/// A bag with three 30 Hz 640x480 cameras of `frames` frames and a 100 Hz joint topic.
pub fn three_camera_bag(path: &Path, frames: u32, seed: u32) {
    let opts = BagWriterOptions {
        chunk_threshold: 1024 * 1024,
        ..BagWriterOptions::with_compression(Compression::None)
    };
    let mut w = BagWriter::create(path, opts).unwrap();
    let topics: Vec<String> = CAMS
        .iter()
        .map(|c| format!("/{c}/color/image_raw/compressed"))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let (cams, js) = cameras_and_joints(&mut w, &topics, "/joint_states");
    let start = 1_700_000_000_000_000_000u64 + u64::from(seed) * 1_000_000_000_000;
    let names = joint_names(4);
    // (time, camera or joint, frame); cameras 2 ms apart so that every tick finds all three.
    let mut events: Vec<(u64, Option<(u32, u32)>)> = Vec::new();
    for k in 0..frames {
        for c in 0..3u32 {
            events.push((
                u64::from(k) * 1_000_000_000 / 30 + u64::from(c) * 2_000_000,
                Some((c, k)),
            ));
        }
    }
    let span = u64::from(frames) * 1_000_000_000 / 30;
    events.extend((0..=span / 10_000_000).map(|i| (i * 10_000_000, None)));
    events.sort();
    for (i, (t, what)) in events.into_iter().enumerate() {
        let abs = start + t;
        match what {
            Some((c, k)) => {
                let p = compressed_image(i as u32, abs, &frame_jpeg(k, c, seed));
                w.write(cams[c as usize], abs, p.as_slice()).unwrap();
            }
            None => {
                let pos = [t as f64 / 1e9, 1.0, 2.0, f64::from(seed)];
                let p = joint_positions(i as u32, abs, &names, &pos);
                w.write(js, abs, p.as_slice()).unwrap();
            }
        }
    }
    w.finish().unwrap();
}

/// The conversion config of the three-camera bags, stored as video.
pub fn config_toml() -> String {
    let mut s = String::from("timeline = \"/joint_states\"\nfps = 30\nstorage = \"video\"\n");
    for c in CAMS {
        s += &format!(
            "[[features]]\nname = \"observation.images.{c}\"\ntopic = \"/{c}/color/image_raw/compressed\"\n"
        );
    }
    s += "[[features]]\nname = \"observation.state\"\ntopic = \"/joint_states\"\nfield = \"position\"\n";
    s
}

/// `dir/cfg.toml` holding [`config_toml`].
fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("cfg.toml");
    std::fs::write(&cfg, config_toml()).unwrap();
    cfg
}

/// `dir/a.bag`, three cameras of `frames` frames (seed 1), and the config.
fn one_bag(dir: &Path, frames: u32) -> (PathBuf, PathBuf) {
    let a = dir.join("a.bag");
    three_camera_bag(&a, frames, 1);
    (a, write_config(dir))
}

/// `dir/ffmpeg`, an executable bash `script` standing in for ffmpeg.
fn fake_ffmpeg(dir: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("ffmpeg");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

/// What a run of the binary did, seen from outside.
pub struct Outside {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Peak summed RSS of the binary and its descendants, sampled every 20 ms.
    pub peak_tree: u64,
    /// Most descendants alive at one sample.
    pub max_children: usize,
}

/// Runs the binary with `args`, sampling its process tree every 20 ms.
pub fn run_sampled(args: &[&str]) -> Outside {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let pid = child.id();
    let out_h = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let err_h = child.stderr.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let (mut peak_tree, mut max_children) = (0u64, 0usize);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        let kids = descendants(pid);
        let tree = rss(pid) + kids.iter().map(|&k| rss(k)).sum::<u64>();
        peak_tree = peak_tree.max(tree);
        max_children = max_children.max(kids.len());
        std::thread::sleep(Duration::from_millis(20));
    };
    Outside {
        status,
        stdout: out_h.map(|h| h.join().unwrap()).unwrap_or_default(),
        stderr: err_h.map(|h| h.join().unwrap()).unwrap_or_default(),
        peak_tree,
        max_children,
    }
}

/// Same data rows (in index order), episode rows (with their video placement), tasks,
/// info.json totals, features and video path, and stats (within float tolerance); both valid.
pub fn assert_same_video_tables(a: &Path, b: &Path) {
    let keys: Vec<&str> = INFO_TOTALS.iter().copied().chain(["video_path"]).collect();
    assert_same_tables(a, b, data_placement_column, &keys);
}

/// Every mp4 under `ds/videos`, relative path → frames decoded as RGB.
pub fn decoded_videos(ds: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![ds.join("videos")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "mp4") {
                let o = Command::new("ffmpeg")
                    .args(["-v", "error", "-i"])
                    .arg(&p)
                    .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "decodes {}", p.display());
                let frames = o
                    .stdout
                    .chunks((W * H * 3) as usize)
                    .map(<[u8]>::to_vec)
                    .collect();
                out.insert(p.strip_prefix(ds).unwrap().display().to_string(), frames);
            }
        }
    }
    out
}

/// Same tables, same video files with the same frame counts, every frame within 38 dB.
pub fn assert_same_dataset(a: &Path, b: &Path) {
    assert_same_video_tables(a, b);
    let (va, vb) = (decoded_videos(a), decoded_videos(b));
    assert_eq!(
        va.keys().collect::<Vec<_>>(),
        vb.keys().collect::<Vec<_>>(),
        "same video files"
    );
    for (k, fa) in &va {
        let fb = &vb[k];
        assert_eq!(fa.len(), fb.len(), "{k}: frame count");
        for (i, (x, y)) in fa.iter().zip(fb).enumerate() {
            let p = psnr(x, y);
            assert!(p >= 38.0, "{k} frame {i}: PSNR {p:.1} dB");
        }
    }
}

fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("json report ({e}): {stdout}"))
}

/// Two bags of three 640x480 cameras and the config.
fn inputs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (a, b) = (dir.join("a.bag"), dir.join("b.bag"));
    three_camera_bag(&a, 40, 1);
    three_camera_bag(&b, 30, 2);
    (a, b, write_config(dir))
}

#[test]
fn the_tree_stays_under_a_ceiling_that_admits_one_encoder_and_equals_an_unconstrained_run() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("ceiling");
    let (a, b, cfg) = inputs(&dir);
    let (free, tight) = (dir.join("free"), dir.join("tight"));
    let s = |p: &Path| p.display().to_string();
    let free_run = run_sampled(&[
        "convert",
        &s(&a),
        &s(&b),
        "-c",
        &s(&cfg),
        "-o",
        &s(&free),
        "--max-memory",
        "2GiB",
        "--json",
        "--jobs",
        "1",
    ]);
    assert!(free_run.status.success(), "{}", free_run.stderr);
    let fr = report(&free_run.stdout);
    let per = fr["memory"]["video"]["encoder_bytes"].as_u64().unwrap();
    assert_eq!(fr["memory"]["video"]["encoders_parallel"], 3);
    // One encoder and the converter fit; three do not.
    let ceiling = fr["memory"]["smallest_ceiling"]
        .as_u64()
        .unwrap()
        .max(per + (64 << 20));
    assert!(
        ceiling < 3 * per,
        "{ceiling} admits three encoders of {per}"
    );
    let tight_run = run_sampled(&[
        "convert",
        &s(&a),
        &s(&b),
        "-c",
        &s(&cfg),
        "-o",
        &s(&tight),
        "--max-memory",
        &ceiling.to_string(),
        "--json",
        "--jobs",
        "1",
    ]);
    assert!(tight_run.status.success(), "{}", tight_run.stderr);
    let tr = report(&tight_run.stdout);
    assert_eq!(tr["memory"]["video"]["encoders_parallel"], 1, "{tr}");
    assert_eq!(tr["memory"]["ceiling"].as_u64().unwrap(), ceiling);
    assert!(
        tight_run.peak_tree <= ceiling,
        "tree peak {} over the ceiling {ceiling} (sampled from outside)",
        tight_run.peak_tree
    );
    let reported = tr["memory"]["peak_tree_rss"].as_u64().unwrap();
    assert!(reported > tr["memory"]["peak_rss"].as_u64().unwrap());
    assert!(reported <= ceiling);
    assert!(
        tr["memory"]["children"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["label"].as_str().unwrap().contains("encoder")),
        "{tr}"
    );
    // The unconstrained run really ran three encoders at once.
    assert!(free_run.max_children >= 3, "{}", free_run.max_children);
    assert_same_dataset(&free, &tight);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ceiling_too_small_for_one_encoder_fails_before_any_work_naming_the_minimum() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("small");
    let (a, cfg) = one_bag(&dir, 5);
    let out = dir.join("ds");
    let r = Command::new(BIN)
        .args(["convert", "-q", "-c"])
        .arg(&cfg)
        .arg(&a)
        .arg("-o")
        .arg(&out)
        .args(["--max-memory", "100MiB"])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("encoder") && err.contains("--max-memory"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_max_memory_a_video_run_chooses_a_ceiling_that_holds_and_prints_it() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("default");
    let (a, cfg) = one_bag(&dir, 20);
    let out = dir.join("ds");
    let s = |p: &Path| p.display().to_string();
    let (log, chart) = (dir.join("mem.csv"), dir.join("mem.svg"));
    let r = run_sampled(&[
        "convert",
        &s(&a),
        "-c",
        &s(&cfg),
        "-o",
        &s(&out),
        "--memory-log",
        &s(&log),
        "--memory-chart",
        &s(&chart),
    ]);
    assert!(r.status.success(), "{}", r.stderr);
    // The memory log has the children's RSS per chunk, the chart the tree and each child.
    let text = std::fs::read_to_string(&log).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "children_rss").unwrap();
    assert!(
        text.lines()
            .skip(1)
            .any(|l| l.split(',').nth(col).unwrap().parse::<u64>().unwrap() > 0),
        "{text}"
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("tree RSS") && svg.contains("ffmpeg encoder observation.images.cam_h"));
    assert!(
        r.stderr.contains("chosen for video") && r.stderr.contains("3 of 3 camera encoders"),
        "{}",
        r.stderr
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("video: ceiling "))
        .unwrap();
    let mib: f64 = line
        .split("video: ceiling ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (r.peak_tree as f64) <= mib * 1048576.0 * 1.001,
        "{} > {line}",
        r.peak_tree
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_encoder_that_loses_a_frame_fails_the_episode() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("lost");
    let (a, b) = (dir.join("a.bag"), dir.join("b.bag"));
    three_camera_bag(&a, 12, 1);
    three_camera_bag(&b, 10, 2);
    let cfg = write_config(&dir);
    // An ffmpeg that drops frame 3 of every encoded stream of bag b (its episodes have 10
    // frames), and exits 0 as if all went well.
    let fake = fake_ffmpeg(
        &dir,
        "#!/bin/bash\n\
         if [[ \" $* \" == *\" pipe:0 \"* && \" $* \" == *\" -s 640x480 \"* && -e \"$DROP_FLAG\" ]]; then\n\
           n=$#; out=${!n}; set -- \"${@:1:$((n-1))}\"\n\
           exec ffmpeg \"$@\" -vf 'select=not(eq(n\\,3))' -fps_mode passthrough \"$out\"\n\
         fi\n\
         exec ffmpeg \"$@\"\n",
    );
    let out = dir.join("ds");
    let flag = dir.join("drop");
    // First bag converts normally; then frames are lost for the second.
    let r = Command::new(BIN)
        .args(["convert", "-q", "--json", "-c"])
        .arg(&cfg)
        .arg(&a)
        .arg("-o")
        .arg(&out)
        .args(["--max-memory", "1GiB", "--jobs", "1"])
        .env("BAG2DATASET_FFMPEG", &fake)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::write(&flag, b"1").unwrap();
    let dir_out = dir.join("ds2");
    let r = Command::new(BIN)
        .args(["convert", "-q", "--json", "-c"])
        .arg(&cfg)
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&dir_out)
        .args(["--max-memory", "1GiB", "--jobs", "1"])
        .env("BAG2DATASET_FFMPEG", &fake)
        .env("DROP_FLAG", &flag)
        .output()
        .unwrap();
    // Both bags lose a frame: nothing can be converted.
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("rows but") && (err.contains("holds 9") || err.contains("holds 11")),
        "{err}"
    );
    assert!(!dir_out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Equivalence: append, kill -9 + re-run, --jobs 2, shards + merge each equal one run ----

/// Four small bags of three 640x480 cameras and the config.
fn four_bags(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let bags: Vec<PathBuf> = (0..4u32)
        .map(|k| {
            let p = dir.join(format!("bag-{k}.bag"));
            three_camera_bag(&p, 12 + 3 * k, k + 1);
            p
        })
        .collect();
    (bags, write_config(dir))
}

fn convert(bags: &[PathBuf], cfg: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(BIN)
        .arg("convert")
        .args(bags)
        .arg("-c")
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .args(["--json", "-q"])
        .args(if extra.contains(&"--max-memory") {
            &[][..]
        } else {
            &["--max-memory", "1GiB"][..]
        })
        // One process (the sequential run the others are compared with), unless asked.
        .args(if extra.contains(&"--jobs") {
            &[][..]
        } else {
            &["--jobs", "1"][..]
        })
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "convert {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    report(&String::from_utf8_lossy(&o.stdout))
}

#[test]
fn video_append_and_rerun_equal_one_run() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("append");
    let (bags, cfg) = four_bags(&dir);
    let (one, nightly) = (dir.join("one"), dir.join("nightly"));
    convert(&bags, &cfg, &one, &[]);
    let r = convert(&bags[..2], &cfg, &nightly, &[]);
    assert_eq!(r["mode"], "created");
    let r = convert(&bags[..3], &cfg, &nightly, &[]);
    assert_eq!(r["mode"], "appended");
    assert_eq!(r["episodes"], 1);
    let r = convert(&bags, &cfg, &nightly, &[]);
    assert_eq!(r["mode"], "appended");
    // Idempotent: nothing new, nothing changes.
    let r = convert(&bags, &cfg, &nightly, &[]);
    assert_eq!(r["mode"], "unchanged");
    assert_same_dataset(&one, &nightly);
    // One video file per camera, continued by the appends (not one per run).
    let files = decoded_videos(&nightly);
    assert_eq!(files.len(), 3, "{:?}", files.keys());
    assert!(bag2dataset::dataset::validate(&nightly).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_video_config_is_refused_in_words() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("refuse");
    let (bags, cfg) = four_bags(&dir);
    let ds = dir.join("ds");
    convert(&bags[..1], &cfg, &ds, &[]);
    let o = Command::new(BIN)
        .arg("convert")
        .arg(&bags[1])
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&ds)
        .args(["-q", "--crf", "23"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("video.crf") && err.contains("23 in this run") && err.contains("--force"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_during_a_video_append_then_rerun_equals_one_run() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("kill");
    let (bags, cfg) = four_bags(&dir);
    let one = dir.join("one");
    convert(&bags, &cfg, &one, &[]);
    let base = dir.join("base");
    convert(&bags[..2], &cfg, &base, &[]);
    for (k, delay_ms) in [150u64, 700, 1500, 3000].into_iter().enumerate() {
        let ds = dir.join(format!("ds-{k}"));
        let o = Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&ds)
            .status()
            .unwrap();
        assert!(o.success());
        let mut child = Command::new(BIN)
            .arg("convert")
            .args(&bags)
            .arg("-c")
            .arg(&cfg)
            .arg("-o")
            .arg(&ds)
            .args(["-q", "--max-memory", "1GiB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The dataset is the old one or the new one, never half of either.
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ds.join("meta/info.json")).unwrap()).unwrap();
        let eps = info["total_episodes"].as_u64().unwrap();
        assert!(
            eps == 2 || eps == 4,
            "after kill at {delay_ms} ms: {eps} episodes"
        );
        assert!(bag2dataset::dataset::validate(&ds).unwrap().is_empty());
        let r = convert(&bags, &cfg, &ds, &[]);
        assert!(r["mode"] == "appended" || r["mode"] == "unchanged", "{r}");
        assert_same_dataset(&one, &ds);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether process `pid` still runs (exists and is not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A converter killed with SIGKILL runs no cleanup: its encoders must not live on (re-parented,
/// holding memory after the run the ceiling was promised for), nor may the parts of a killed
/// `--jobs` run. The encoders here keep running after their input ends, as a real one does
/// while it works through a backlog of frames.
#[test]
fn children_die_with_a_killed_converter() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("orphans");
    let (bags, cfg) = four_bags(&dir);
    let fake = fake_ffmpeg(
        &dir,
        "#!/bin/bash\n\
         if [[ \" $* \" == *\" pipe:0 \"* ]]; then cat > /dev/null; exec sleep 120; fi\n\
         exec ffmpeg \"$@\"\n",
    );
    for jobs in ["1", "2"] {
        let mut child = Command::new(BIN)
            .arg("convert")
            .args(&bags)
            .arg("-c")
            .arg(&cfg)
            .arg("-o")
            .arg(dir.join(format!("ds-{jobs}")))
            .args(["-q", "--max-memory", "2GiB", "--jobs", jobs])
            .env("BAG2DATASET_FFMPEG", &fake)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until an encoder (the fake reading frames from its pipe) runs under it.
        let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let encoder = |p: u32| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"pipe:0"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut tree = Vec::new();
        while std::time::Instant::now() < deadline {
            tree = descendants(child.id());
            if tree.iter().any(|&p| encoder(p)) {
                // Its siblings may still be starting.
                std::thread::sleep(Duration::from_millis(200));
                tree = descendants(child.id());
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "--jobs {jobs}: the run ended before an encoder was seen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let encoders = tree.iter().filter(|&&p| encoder(p)).count();
        assert!(
            encoders > 0,
            "--jobs {jobs}: no encoder started within 60 s"
        );
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tree.iter().any(|&p| running(p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<String> = tree
            .iter()
            .filter(|&&p| running(p))
            .map(|&p| format!("{p} {}", comm(p).trim()))
            .collect();
        for p in tree.iter().filter(|&&p| running(p)) {
            let _ = Command::new("kill").arg("-9").arg(p.to_string()).status();
        }
        assert!(
            left.is_empty(),
            "--jobs {jobs}: still running 5 s after the converter was killed: {left:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn video_jobs_and_shards_plus_merge_equal_one_run() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("jobs");
    let (bags, cfg) = four_bags(&dir);
    let one = dir.join("one");
    convert(&bags, &cfg, &one, &["--jobs", "1"]);
    // --jobs 2: two children, each under half the ceiling with its own encoders.
    let jobs = dir.join("jobs");
    let o = Command::new(BIN)
        .arg("convert")
        .args(&bags)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&jobs)
        .args(["--json", "--jobs", "2", "--max-memory", "1GiB"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let r = report(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(r["jobs"], 2, "{r}");
    // Each job's tree (converter and encoders) stayed under its share of the ceiling.
    let per_job = r["per_job_ceiling"].as_u64().unwrap();
    for j in r["job_reports"].as_array().unwrap() {
        let m = &j["memory"];
        assert!(m["peak_tree_rss"].as_u64().unwrap() <= per_job, "{m}");
        assert!(m["peak_children_rss"].as_u64().unwrap() > 0, "{m}");
    }
    assert!(r["sum_of_job_tree_peak_rss"].as_u64().unwrap() <= 1 << 30);
    // The children's datasets are adopted whole: each job's video files are linked, so the
    // files are laid out per job, and the frames are the same.
    common::same::assert_same_in_any_layout(&one, &jobs);
    // Shards, then merge.
    let (s1, s2) = (dir.join("s1"), dir.join("s2"));
    convert(&bags, &cfg, &s1, &["--shard", "1/2"]);
    convert(&bags, &cfg, &s2, &["--shard", "2/2"]);
    let merged = dir.join("merged");
    let o = Command::new(BIN)
        .arg("merge")
        .arg(&s1)
        .arg(&s2)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::same::assert_same_in_any_layout(&one, &merged);
    // Contiguous shards are linked, no ffmpeg runs: a small ceiling is enough.
    let o = Command::new(BIN)
        .arg("merge")
        .arg(&s1)
        .arg(&s2)
        .arg("-o")
        .arg(dir.join("merged-small"))
        .args(["--max-memory", "48MiB"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::same::assert_same_in_any_layout(&one, &dir.join("merged-small"));
    // Interleaved inputs (bags 0, 2 | 1, 3) cannot be adopted whole: each episode is
    // stream-copied, and merge's ceiling holds that ffmpeg too: too small a one is refused
    // up front; the default one merges them into the same dataset.
    let (i1, i2) = (dir.join("i1"), dir.join("i2"));
    convert(&[bags[0].clone(), bags[2].clone()], &cfg, &i1, &[]);
    convert(&[bags[1].clone(), bags[3].clone()], &cfg, &i2, &[]);
    let o = Command::new(BIN)
        .arg("merge")
        .arg(&i1)
        .arg(&i2)
        .arg("-o")
        .arg(dir.join("interleaved-small"))
        .args(["--max-memory", "48MiB"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("stream copy") && err.contains("--max-memory"),
        "{err}"
    );
    assert!(!dir.join("interleaved-small").exists());
    let interleaved = dir.join("interleaved");
    let o = Command::new(BIN)
        .arg("merge")
        .arg(&i1)
        .arg(&i2)
        .arg("-o")
        .arg(&interleaved)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = report(&String::from_utf8_lossy(&o.stdout));
    assert!(rep.get("whole").is_none(), "{rep}");
    // The stream copies are children of merge, sampled like a conversion's.
    assert!(
        rep["memory"]["peak_children_rss"].as_u64().unwrap() > 0,
        "{rep}"
    );
    assert_same_dataset(&one, &interleaved);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lerobot_0_4_and_0_6_decode_appended_spilled_and_merged_video_datasets() {
    if !ffmpeg_present() {
        return;
    }
    let pythons = lerobot_pythons();
    if pythons.is_empty() {
        eprintln!("SKIPPED: no lerobot venv (see above)");
        return;
    }
    let dir = tmp("clients");
    let (bags, cfg) = four_bags(&dir);
    // Appended in two runs under a ceiling that admits one encoder (the others spill).
    let nightly = dir.join("nightly");
    let one = bag2dataset::dataset::video::encoders::encoder_bytes(
        bag2dataset::dataset::video::VideoCodec::Av1,
        W,
        H,
    );
    let tight = (one + (80 << 20)).to_string();
    for n in [2, 4] {
        let r = convert(
            &bags[..n],
            &cfg,
            &nightly,
            &["--max-memory", &tight, "--jobs", "1"],
        );
        assert_eq!(r["memory"]["video"]["encoders_parallel"], 1, "{r}");
    }
    // Shards merged.
    let (s1, s2, merged) = (dir.join("s1"), dir.join("s2"), dir.join("merged"));
    convert(&bags, &cfg, &s1, &["--shard", "1/2"]);
    convert(&bags, &cfg, &s2, &["--shard", "2/2"]);
    let o = Command::new(BIN)
        .arg("merge")
        .arg(&s1)
        .arg(&s2)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for py in &pythons {
        for ds in [&nightly, &merged] {
            let (ok, text) =
                run_python_script(py, "lerobot_video_frames.py", &[ds], &dir.join("hf-cache"));
            println!(
                "{py} {}: {}",
                ds.display(),
                text.lines().next().unwrap_or("")
            );
            assert!(ok, "{py} on {}: {text}", ds.display());
            // 4 episodes x (first, middle, last) x 3 cameras.
            assert!(text.contains("OK: 36 frames decoded"), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_encoder_growing_past_the_ceiling_stops_the_run_cleanly() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("over");
    let (a, cfg) = one_bag(&dir, 20);
    // An "encoder" that first holds ~400 MB (far beyond its planned share), then encodes.
    let fake = fake_ffmpeg(
        &dir,
        "#!/bin/bash\n\
         if [[ \" $* \" == *\" pipe:0 \"* ]]; then\n\
           big=$(head -c 400000000 /dev/zero | tr '\\0' a); sleep 1; unset big\n\
         fi\n\
         exec ffmpeg \"$@\"\n",
    );
    let out = dir.join("ds");
    let one = bag2dataset::dataset::video::encoders::encoder_bytes(
        bag2dataset::dataset::video::VideoCodec::Av1,
        W,
        H,
    );
    let r = Command::new(BIN)
        .args(["convert", "-q", "--json", "-c"])
        .arg(&cfg)
        .arg(&a)
        .arg("-o")
        .arg(&out)
        .arg("--max-memory")
        .arg((one + (100 << 20)).to_string())
        .env("BAG2DATASET_FFMPEG", &fake)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(
        err.contains("resident memory of the process and its children")
            && err.contains("--max-memory"),
        "{err}"
    );
    // Stopped cleanly: nothing published, no encoder left behind, no staging left over.
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_video_reports_the_smallest_ceiling_with_one_encoder_verified() {
    if !ffmpeg_present() {
        return;
    }
    let dir = tmp("profile");
    let (a, cfg) = one_bag(&dir, 15);
    let o = Command::new(BIN)
        .args(["profile", "--video", "--json", "-c"])
        .arg(&cfg)
        .arg(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&String::from_utf8_lossy(&o.stdout));
    let smallest = r["smallest_ceiling"].as_u64().unwrap();
    let one = r["profile"]["memory"]["video"]["encoder_bytes"]
        .as_u64()
        .unwrap();
    assert!(smallest > one, "{r}");
    // Verified: converted again at that ceiling, its tree under it.
    let v = &r["verified"];
    assert_eq!(v["ceiling"].as_u64().unwrap(), smallest, "{r}");
    assert!(v["peak_rss"].as_u64().unwrap() <= smallest);
    let _ = std::fs::remove_dir_all(&dir);
}
