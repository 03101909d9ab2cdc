//! End-to-end conversion: the demo bag, a config with slices/scales/concatenation/resampling/
//! trimming on a synthetic bag whose values are known, and the exit codes of the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Int64Type};
use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression};
use bag2dataset::convert::config::ConvertConfig;
use bag2dataset::convert::run::{RunOptions, run};
use common::SyntheticBag;
use common::bags::cam_and_state_config;
use common::cli::{BIN, bin, tmp};
use common::demo_bag;
use common::read::{batches, walk};

fn opts(inputs: Vec<PathBuf>, output: PathBuf, config: Option<ConvertConfig>) -> RunOptions {
    RunOptions {
        inputs,
        output,
        config,
        ceiling: 256 << 20, // roomy: in-process runs share RSS with the tests beside them
        ..RunOptions::default()
    }
}

/// All record batches of the dataset's data files, in path order.
fn read_rows(ds: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    batches(&walk(&ds.join("data")))
}

#[test]
fn committed_demo_bag_is_what_the_writer_makes() {
    let (bytes, _) =
        bag2dataset::demo::write_demo_bag_to(std::io::Cursor::new(Vec::new())).unwrap();
    let committed = std::fs::read(demo_bag()).expect("testdata/demo.bag is committed");
    assert!(
        bytes.into_inner() == committed,
        "testdata/demo.bag differs from `bag2dataset make-demo`"
    );
}

#[test]
fn demo_converts_to_a_valid_dataset_with_exact_totals() {
    let dir = tmp("demo");
    let out = dir.join("ds");
    let report = run(&opts(vec![demo_bag()], out.clone(), None)).expect("demo converts");
    assert_eq!(report.episodes, 1);
    assert_eq!(report.failed, 0);
    assert_eq!(report.fps, 30);
    assert!(report.frames >= 115, "{} frames", report.frames);
    assert_eq!(
        report.features,
        [
            "observation.images.cam_h",
            "observation.images.cam_l",
            "observation.state",
            "action"
        ]
    );
    let problems = bag2dataset::dataset::validate(&out).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    assert_eq!(info["total_frames"].as_u64(), Some(report.frames));
    assert_eq!(
        info["features"]["observation.images.cam_h"]["shape"],
        serde_json::json!([72, 96, 3])
    );
    assert_eq!(
        info["features"]["observation.state"]["names"][0],
        "arm_joint_1"
    );
    let batches = read_rows(&out);
    let mut n = 0i64;
    for b in &batches {
        let index = b
            .column_by_name("index")
            .unwrap()
            .as_primitive::<Int64Type>();
        let ts = b
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<Float32Type>();
        let fi = b
            .column_by_name("frame_index")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(index.value(i), n, "contiguous index");
            assert_eq!(fi.value(i), n);
            assert_eq!(
                ts.value(i),
                (n as f64 / 30.0) as f32,
                "timestamp = frame_index / fps"
            );
            n += 1;
        }
        let img = b
            .column_by_name("observation.images.cam_h")
            .unwrap()
            .as_struct();
        let bytes = img.column(0).as_binary::<i32>();
        assert!(
            bytes.value(0).starts_with(&[0xFF, 0xD8]),
            "JPEG passed through"
        );
    }
    assert_eq!(n as u64, report.frames);
    // memory figures are reported
    assert!(report.memory.peak_rss > 0 && report.memory.peak_rss_anon > 0);
    assert!(report.memory.peak_rss <= report.memory.ceiling);
    std::fs::remove_dir_all(&dir).ok();
}

/// The shared synthetic bag (tests/common): 30 Hz camera, 200 Hz joints with
/// position[j] = j * 1000 + t_ms.
fn synthetic_bag(path: &Path, seconds: u64, compression: Compression) {
    synthetic_bag_chunked(path, seconds, compression, 64 * 1024);
}

fn synthetic_bag_chunked(
    path: &Path,
    seconds: u64,
    compression: Compression,
    chunk_threshold: usize,
) {
    SyntheticBag {
        seconds,
        compression,
        chunk_threshold,
        ..SyntheticBag::default()
    }
    .write(path);
}

#[test]
fn config_slices_scales_concatenates_resamples_and_trims() {
    let dir = tmp("config");
    let bag = dir.join("syn.bag");
    synthetic_bag(&bag, 5, Compression::Bz2);
    let cfg = ConvertConfig::from_toml(
        r#"
fps = 10
timeline = "/cam/image/compressed"
trim_start = 3
trim_end = 2
task = "reach"
[[features]]
name = "observation.images.cam"
topic = "/cam/image/compressed"
[[features]]
name = "observation.state"
policy = "latest"
[[features.sources]]
topic = "/arm/joint_states"
field = "position"
range = "1..3"
[[features.sources]]
topic = "/arm/joint_states"
field = "position"
range = "5..6"
scale = 0.001
"#,
        "test",
    )
    .unwrap();
    let out = dir.join("ds");
    let report = run(&opts(vec![bag], out.clone(), Some(cfg))).unwrap();
    // 5 s of camera at 30 Hz resampled to 10 Hz: ticks 0, 0.1, ..., 4.9 s = 50; minus 3 + 2 trimmed
    let ep = report.bags[0].report.as_ref().unwrap();
    assert_eq!(ep.ticks, 50);
    assert_eq!(ep.dropped, 0);
    assert_eq!(ep.trimmed, 5);
    assert_eq!(report.frames, 45);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    assert_eq!(info["fps"], 10);
    assert_eq!(
        info["features"]["observation.state"]["shape"],
        serde_json::json!([3])
    );
    assert_eq!(
        info["features"]["observation.state"]["names"],
        serde_json::json!(["j1", "j2", "j5"])
    );
    let batches = read_rows(&out);
    let mut row = 0usize;
    for b in &batches {
        let state = b
            .column_by_name("observation.state")
            .unwrap()
            .as_fixed_size_list();
        for i in 0..b.num_rows() {
            let v = state.value(i);
            let v = v.as_primitive::<Float32Type>();
            // tick k (after trimming 3) is at (k + 3) * 100 ms; latest joint sample at or before it
            let t_ms = ((row + 3) * 100) as f64;
            assert_eq!(v.value(0), (1000.0 + t_ms) as f32, "row {row}");
            assert_eq!(v.value(1), (2000.0 + t_ms) as f32);
            assert_eq!(v.value(2), ((5000.0 + t_ms) * 0.001) as f32);
            row += 1;
        }
    }
    assert_eq!(row, 45);
    let tasks = walk(&out.join("meta"))
        .into_iter()
        .any(|p| p.ends_with("tasks.parquet"));
    assert!(tasks);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_topic_that_stops_halfway_drops_and_counts_frames() {
    let dir = tmp("stops");
    let bag = dir.join("syn.bag");
    synthetic_bag(&bag, 4, Compression::None);
    // rewrite: keep only joint messages of the first 2 s
    let cfg = cam_and_state_config("timeline = \"/cam/image/compressed\"\ntolerance_ms = 20");
    let mut cut = BagWriter::create(&dir.join("cut.bag"), BagWriterOptions::default()).unwrap();
    let src = bag2dataset::bag::BagFile::open(&bag).unwrap();
    let index = bag2dataset::bag::BagIndex::read(&src).unwrap();
    let ids: Vec<u32> = index
        .connections
        .iter()
        .map(|c| {
            cut.add_connection(&c.topic, &c.msgtype, &c.md5sum, &c.definition)
                .unwrap()
        })
        .collect();
    let t_end = index.time_range().unwrap().0 + 2_000_000_000;
    for ch in &index.chunks {
        let data = bag2dataset::bag::chunk_reader::read_chunk(&src, ch).unwrap();
        for m in bag2dataset::bag::chunk_reader::messages(data.bytes()) {
            let m = m.unwrap();
            let conn = &index
                .connections
                .iter()
                .position(|c| c.id == m.conn)
                .unwrap();
            let topic = &index.connections[*conn].topic;
            if topic == "/arm/joint_states" && m.time_ns > t_end {
                continue;
            }
            cut.write(ids[*conn], m.time_ns, m.data).unwrap();
        }
    }
    cut.finish().unwrap();
    let out = dir.join("ds");
    let report = run(&opts(vec![dir.join("cut.bag")], out, Some(cfg))).unwrap();
    let ep = report.bags[0].report.as_ref().unwrap();
    assert_eq!(ep.ticks, 120);
    assert!(
        ep.dropped >= 58 && ep.dropped <= 60,
        "dropped {}",
        ep.dropped
    );
    assert_eq!(ep.frames + ep.dropped, ep.ticks);
    let state = ep
        .slots
        .iter()
        .find(|s| s.label.contains("observation.state"))
        .unwrap();
    assert_eq!(state.missed, ep.dropped);
    assert!(state.max_skew_ms <= 20.0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn exit_codes_and_machine_readable_output() {
    let dir = tmp("exit");
    let out = dir.join("ds");
    let demo = demo_bag();
    // info --json is one JSON object per bag
    let o = bin(&["info", "--json", demo.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"], 1839);
    assert_eq!(v["topics"].as_array().unwrap().len(), 4);
    // convert --json: report on stdout only
    let o = bin(&[
        "convert",
        demo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["episodes"], 1);
    assert!(r["memory"]["peak_rss"].as_u64().unwrap() > 0);
    // the same run again: the bag is already in the dataset, nothing to do
    let o = bin(&[
        "convert",
        demo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0));
    // an output that is something else: refused without --overwrite
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = bin(&[
        "convert",
        demo.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(other.to_str().unwrap()));
    // validate: ok, then broken
    assert_eq!(
        bin(&["validate", out.to_str().unwrap()]).status.code(),
        Some(0)
    );
    std::fs::remove_file(out.join("meta/tasks.parquet")).unwrap();
    let o = bin(&["validate", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tasks.parquet"));
    // usage error
    assert_eq!(bin(&["convert"]).status.code(), Some(2));
    assert_eq!(
        bin(&[
            "convert",
            demo.to_str().unwrap(),
            "-o",
            "x",
            "--max-memory",
            "lots"
        ])
        .status
        .code(),
        Some(1)
    );
    // bad input names the file, exit 1, no panic
    let junk = dir.join("junk.bag");
    std::fs::write(&junk, b"definitely not a bag").unwrap();
    let o = bin(&["info", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.bag") && err.contains("not a ROS1 bag"),
        "{err}"
    );
    // one bad bag among good ones: exit 3, dataset of the good ones
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(&demo, inputs.join("a.bag")).unwrap();
    std::fs::copy(&junk, inputs.join("b.bag")).unwrap();
    std::fs::copy(&demo, inputs.join("c.bag")).unwrap();
    let out2 = dir.join("ds2");
    let o = bin(&[
        "convert",
        inputs.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["episodes"], 2);
    assert_eq!(r["failed"], 1);
    assert!(r["bags"][1]["error"].as_str().unwrap().contains("b.bag"));
    assert!(bag2dataset::dataset::validate(&out2).unwrap().is_empty());
    // dump to a closed pipe is not an error
    let mut child = Command::new(BIN)
        .env("BAG2DATASET_SETTLE", "0")
        .args(["dump", demo.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn damaged_chunks_and_messages_are_skipped_and_counted_or_fatal_with_strict() {
    let dir = tmp("damage");
    let bag = dir.join("syn.bag");
    synthetic_bag(&bag, 4, Compression::Lz4);
    // corrupt the middle of the second chunk's lz4 stream
    let (pos, data_offset, data_len, chunks) = {
        let f = bag2dataset::bag::BagFile::open(&bag).unwrap();
        let index = bag2dataset::bag::BagIndex::read(&f).unwrap();
        let c = &index.chunks[1];
        (c.pos, c.data_offset, c.data_len, index.chunks.len())
    };
    assert!(chunks >= 3, "need several chunks, got {chunks}");
    let mut bytes = std::fs::read(&bag).unwrap();
    let mid = (data_offset + data_len as u64 / 2) as usize;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5A;
    }
    let broken = dir.join("broken.bag");
    std::fs::write(&broken, &bytes).unwrap();
    let cfg = |strict: bool| {
        cam_and_state_config(&format!(
            "strict = {strict}\ntimeline = \"/cam/image/compressed\""
        ))
    };
    let report = run(&opts(
        vec![broken.clone()],
        dir.join("ds"),
        Some(cfg(false)),
    ))
    .expect("damage is skipped");
    let ep = report.bags[0].report.as_ref().unwrap();
    assert_eq!(
        ep.damage.chunks_skipped + ep.damage.chunks_cut,
        1,
        "{:?}",
        ep.damage
    );
    assert!(
        ep.damage.warnings[0].contains(&pos.to_string()),
        "{:?}",
        ep.damage.warnings
    );
    // own-rate timeline: the camera frames of the lost chunk are simply not ticks
    assert!(ep.frames > 0 && ep.frames < 120, "frames {}", ep.frames);
    let e = run(&opts(vec![broken], dir.join("ds-strict"), Some(cfg(true))))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("broken.bag") && e.contains(&pos.to_string()),
        "{e}"
    );
    assert!(!dir.join("ds-strict").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// Every data value of a dataset, row by row, as text (row groups and files may differ).
fn dataset_rows(ds: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for b in read_rows(ds) {
        for i in 0..b.num_rows() {
            let row: Vec<String> = b
                .columns()
                .iter()
                .map(|c| format!("{:?}", c.slice(i, 1)))
                .collect();
            rows.push(row.join("|"));
        }
    }
    rows
}

#[test]
fn same_frames_whatever_the_chunk_size_compression_and_ceiling() {
    let dir = tmp("invariance");
    let cfg = ConvertConfig::from_toml(
        r#"
fps = 15
timeline = "/cam/image/compressed"
tolerance_ms = 40
[[features]]
name = "observation.images.cam"
topic = "/cam/image/compressed"
[[features]]
name = "observation.state"
policy = "linear"
topic = "/arm/joint_states"
field = "position"
"#,
        "test",
    )
    .unwrap();
    let mut reference: Option<Vec<String>> = None;
    for (i, (threshold, compression, ceiling)) in [
        (4 * 1024, Compression::None, 128u64 << 20),
        (64 * 1024, Compression::Lz4, 200 << 20),
        (2 << 20, Compression::Bz2, 256 << 20),
        (16 * 1024, Compression::Lz4, 1 << 30),
    ]
    .into_iter()
    .enumerate()
    {
        let bag = dir.join(format!("syn{i}.bag"));
        synthetic_bag_chunked(&bag, 3, compression, threshold);
        let out = dir.join(format!("ds{i}"));
        let mut o = opts(vec![bag], out.clone(), Some(cfg.clone()));
        o.ceiling = ceiling;
        let report = run(&o).unwrap();
        assert_eq!(report.frames, 45, "case {i}");
        let rows = dataset_rows(&out);
        match &reference {
            None => reference = Some(rows),
            Some(r) => assert!(*r == rows, "case {i} differs from case 0"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A size-limited file system (tmpfs) for the disk-full test; None (and the test skips) when
/// it cannot be mounted here (not root, no tmpfs).
fn small_filesystem(dir: &Path, size: &str) -> Option<PathBuf> {
    let mnt = dir.join("small-fs");
    std::fs::create_dir_all(&mnt).ok()?;
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            mnt.to_str()?,
        ])
        .status()
        .ok()?
        .success();
    ok.then_some(mnt)
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_no_dataset() {
    let dir = tmp("diskfull");
    let Some(mnt) = small_filesystem(&dir, "150k") else {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let out = mnt.join("ds");
    let o = bin(&[
        "convert",
        demo_bag().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    let listing: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("No space left on device") && err.contains("ds.partial"),
        "{err}"
    );
    assert!(listing.is_empty(), "left behind: {listing:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// More frames held back for `trim_end` than the frames budget holds: before, the aligner
/// waited for bytes only those frames could free (a hang); now the run fails at once, naming
/// the frames and a ceiling that works.
#[test]
fn trim_end_frames_over_the_frames_budget_fail_clearly_instead_of_hanging() {
    let dir = tmp("trim-end-budget");
    let bag = dir.join("long.bag");
    synthetic_bag(&bag, 70, Compression::Lz4);
    let cfg = dir.join("conv.toml");
    std::fs::write(
        &cfg,
        "fps = 30\ntimeline = \"/cam/image/compressed\"\ntrim_end = 1900\n\
         [[features]]\nname = \"observation.images.cam\"\ntopic = \"/cam/image/compressed\"\n\
         [[features]]\nname = \"observation.state\"\ntopic = \"/arm/joint_states\"\nfield = \"position\"\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["convert", bag.to_str().unwrap(), "-o"])
        .arg(dir.join("out"))
        .args(["-c", cfg.to_str().unwrap(), "--max-memory", "32MiB", "-q"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("convert hung with trim_end frames over the frames budget");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("held back for trim_end") && err.contains("--max-memory"),
        "{err}"
    );
    assert!(!dir.join("out/meta/info.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}
