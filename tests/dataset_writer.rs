//! End-to-end tests of the LeRobot v3.0 writer: write small datasets with vector and JPEG
//! features, read them back with the parquet crate, and check `validate` on good and broken
//! output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema};
use bag2dataset::dataset::{
    DatasetSpec, DatasetWriter, FeatureKind, FeatureSpec, FeatureValue, Frame, ImageFormat,
    WriterOptions, validate,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

const H: u32 = 24;
const W: u32 = 32;
const FPS: u32 = 15;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("b2d-dataset-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spec() -> DatasetSpec {
    DatasetSpec {
        fps: FPS,
        robot_type: Some("test_bot".into()),
        features: vec![
            FeatureSpec {
                name: "observation.state".into(),
                kind: FeatureKind::Vector {
                    len: 4,
                    names: Some(vec!["j0".into(), "j1".into(), "j2".into(), "j3".into()]),
                },
            },
            FeatureSpec {
                name: "action".into(),
                kind: FeatureKind::Vector {
                    len: 1,
                    names: None,
                },
            },
            FeatureSpec {
                name: "observation.images.cam".into(),
                kind: FeatureKind::Image {
                    height: H,
                    width: W,
                    channels: 3,
                },
            },
        ],
    }
}

/// A deterministic small JPEG whose content depends on (episode, frame).
fn jpeg(ep: u32, i: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(W, H, |x, y| {
        image::Rgb([
            ((x * 8 + i * 3) % 256) as u8,
            ((y * 10 + ep * 40) % 256) as u8,
            ((x + y + i) * 5 % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn state(ep: u32, i: u32) -> Vec<f32> {
    (0..4)
        .map(|j| ep as f32 * 100.0 + i as f32 + j as f32 * 0.5 + ((i * 7 + j) % 5) as f32 * 0.25)
        .collect()
}

fn frame(ep: u32, i: u32) -> Frame {
    Frame {
        values: vec![
            FeatureValue::Vector(state(ep, i)),
            FeatureValue::Vector(vec![i as f32 * 0.1]),
            FeatureValue::Image {
                bytes: jpeg(ep, i).into(),
                format: ImageFormat::Jpeg,
            },
        ],
    }
}

const EPISODES: [(u32, &str); 3] = [(30, "pick"), (45, "place"), (20, "pick")];

fn write_dataset(out: &Path, opts: WriterOptions) -> Vec<bag2dataset::dataset::EpisodeSummary> {
    let mut w = DatasetWriter::create(out, spec(), opts).unwrap();
    let mut sums = Vec::new();
    for (ep, (n, task)) in EPISODES.iter().enumerate() {
        w.begin_episode(task, *n as usize).unwrap();
        for i in 0..*n {
            w.push_frame(frame(ep as u32, i)).unwrap();
        }
        sums.push(w.end_episode().unwrap());
    }
    let s = w.finish().unwrap();
    assert_eq!(s.total_episodes, 3);
    assert_eq!(s.total_frames, 95);
    assert_eq!(s.total_tasks, 2);
    sums
}

fn data_files(out: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in std::fs::read_dir(out.join("data")).unwrap() {
        for f in std::fs::read_dir(c.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v.sort();
    v
}

fn read_all(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn np_quantile(data: &[f64], q: f64) -> f64 {
    let mut v = data.to_vec();
    v.sort_by(f64::total_cmp);
    let t = q * (v.len() - 1) as f64;
    let lo = t.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (t - lo as f64) * (v[hi] - v[lo])
}

fn assert_valid(out: &Path) {
    let problems = validate(out).unwrap();
    assert!(problems.is_empty(), "problems: {problems:#?}");
}

#[test]
fn writes_a_valid_dataset_and_reads_back() {
    let dir = tmpdir("basic");
    let out = dir.join("ds");
    let sums = write_dataset(&out, WriterOptions::default());
    assert_valid(&out);
    // Nothing but the dataset next to it (staging renamed away).
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let files = data_files(&out);
    assert_eq!(files, vec![out.join("data/chunk-000/file-000.parquet")]);
    let reader = SerializedFileReader::new(File::open(&files[0]).unwrap()).unwrap();
    // One row group per episode at the default size.
    assert_eq!(reader.metadata().num_row_groups(), 3);
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    assert_eq!(kv.iter().filter(|k| k.key == "huggingface").count(), 1);
    drop(reader);

    let batches = read_all(&files[0]);
    let schema = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap())
        .unwrap()
        .schema()
        .clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "observation.state",
            "action",
            "observation.images.cam",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index"
        ]
    );
    assert!(matches!(
        schema.field(0).data_type(),
        DataType::FixedSizeList(_, 4)
    ));
    assert_eq!(schema.field(1).data_type(), &DataType::Float32);
    let hf: Value = serde_json::from_str(&schema.metadata()["huggingface"]).unwrap();
    assert_eq!(hf["info"]["features"]["observation.state"]["_type"], "List");

    let mut row = 0i64;
    for b in &batches {
        let idx = ints(b, "index");
        let fi = ints(b, "frame_index");
        let ei = ints(b, "episode_index");
        let ti = ints(b, "task_index");
        let ts = b
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<Float32Type>();
        let st = b.column(0).as_fixed_size_list();
        let act = b.column(1).as_primitive::<Float32Type>();
        let img = b.column(2).as_struct();
        let bytes = img.column(0).as_binary::<i32>();
        let paths = img.column(1).as_string::<i32>();
        for r in 0..b.num_rows() {
            assert_eq!(idx[r], row);
            let (ep, i) = (ei[r] as u32, fi[r] as u32);
            assert_eq!(ti[r], if ep == 1 { 1 } else { 0 });
            assert_eq!(ts.value(r), (i as f64 / FPS as f64) as f32);
            let v = st.value(r);
            assert_eq!(
                v.as_primitive::<Float32Type>().values().to_vec(),
                state(ep, i)
            );
            assert_eq!(act.value(r), i as f32 * 0.1);
            assert_eq!(bytes.value(r), jpeg(ep, i).as_slice());
            assert_eq!(paths.value(r), format!("frame-{i:06}.jpg"));
            row += 1;
        }
    }
    assert_eq!(row, 95);

    // info.json
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    assert_eq!(info["total_frames"], 95);
    assert_eq!(info["splits"]["train"], "0:3");
    assert_eq!(info["robot_type"], "test_bot");
    assert_eq!(
        info["features"]["observation.images.cam"]["shape"],
        serde_json::json!([H, W, 3])
    );

    // Episode summaries and stats vs a naive computation.
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for (ep, s) in sums.iter().enumerate() {
        let n = EPISODES[ep].0;
        assert_eq!(s.frames, n as u64);
        let st = &s
            .stats
            .iter()
            .find(|x| x.0 == "observation.state")
            .unwrap()
            .1;
        #[allow(clippy::needless_range_loop)] // j indexes the state and `all`
        for j in 0..4 {
            let col: Vec<f64> = (0..n).map(|i| f64::from(state(ep as u32, i)[j])).collect();
            all[j].extend(&col);
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64;
            assert!((st.mean[j] - mean).abs() < 1e-9);
            assert!((st.std[j] - var.sqrt()).abs() < 1e-9);
            for (k, q) in [0.01, 0.1, 0.5, 0.9, 0.99].iter().enumerate() {
                assert!((st.quantiles[k][j] - np_quantile(&col, *q)).abs() < 1e-9);
            }
        }
        let ts = &s.stats.iter().find(|x| x.0 == "timestamp").unwrap().1;
        assert_eq!(ts.max[0], f64::from((n - 1) as f32 / FPS as f32));
        let img = &s
            .stats
            .iter()
            .find(|x| x.0 == "observation.images.cam")
            .unwrap()
            .1;
        assert_eq!(img.count, n as u64); // short episodes: every frame is sampled
        assert!(
            img.min
                .iter()
                .chain(&img.max)
                .all(|v| (0.0..=1.0).contains(v))
        );
    }
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/stats.json")).unwrap())
            .unwrap();
    let ds = &stats["observation.state"];
    for (j, col) in all.iter().enumerate() {
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64;
        assert!((ds["mean"][j].as_f64().unwrap() - mean).abs() < 1e-9);
        assert!((ds["std"][j].as_f64().unwrap() - var.sqrt()).abs() < 1e-9);
        let min = col.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(ds["min"][j].as_f64().unwrap(), min);
        // Quantiles: count-weighted means of the episode quantiles.
        let want: f64 = sums
            .iter()
            .map(|s| {
                let st = &s.stats[0].1;
                st.quantiles[4][j] * st.count as f64
            })
            .sum::<f64>()
            / 95.0;
        assert!((ds["q99"][j].as_f64().unwrap() - want).abs() < 1e-9);
    }
    assert_eq!(ds["count"], serde_json::json!([95]));
    assert_eq!(stats["index"]["max"], serde_json::json!([94.0]));
    assert_eq!(
        stats["observation.images.cam"]["mean"][0][0]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Episodes parquet.
    let eps = read_all(&out.join("meta/episodes/chunk-000/file-000.parquet"));
    let b = &eps[0];
    assert_eq!(ints(b, "length"), vec![30, 45, 20]);
    assert_eq!(ints(b, "dataset_from_index"), vec![0, 30, 75]);
    assert_eq!(ints(b, "dataset_to_index"), vec![30, 75, 95]);

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_row_groups_and_rolled_files() {
    let dir = tmpdir("roll");
    let out = dir.join("ds");
    let opts = WriterOptions {
        row_group_bytes: 8 * 1024,
        data_file_bytes: 1,
        chunks_size: 2,
        overwrite: false,
        ..WriterOptions::default()
    };
    write_dataset(&out, opts);
    assert_valid(&out);
    let files = data_files(&out);
    assert_eq!(
        files,
        vec![
            out.join("data/chunk-000/file-000.parquet"),
            out.join("data/chunk-000/file-001.parquet"),
            out.join("data/chunk-001/file-000.parquet"),
        ]
    );
    for (k, f) in files.iter().enumerate() {
        let reader = SerializedFileReader::new(File::open(f).unwrap()).unwrap();
        let rgs = reader.metadata().num_row_groups();
        assert!(rgs > 1, "{f:?}: {rgs} row groups");
        // One episode per file, never split.
        let eps: std::collections::BTreeSet<i64> = read_all(f)
            .iter()
            .flat_map(|b| ints(b, "episode_index"))
            .collect();
        assert_eq!(eps.into_iter().collect::<Vec<_>>(), vec![k as i64]);
    }
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta/info.json")).unwrap())
            .unwrap();
    assert_eq!(info["chunks_size"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn memory_stays_near_the_buffer_size() {
    let dir = tmpdir("mem");
    let out = dir.join("ds");
    let buffer = 16 * 1024;
    let mut w = DatasetWriter::create(
        &out,
        spec(),
        WriterOptions {
            buffer_bytes: buffer,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let mut peak = 0;
    let mut episode_bytes = 0;
    for ep in 0..3 {
        w.begin_episode("long", 600).unwrap();
        for i in 0..600 {
            let f = frame(ep, i);
            if let FeatureValue::Image { bytes, .. } = &f.values[2] {
                episode_bytes += bytes.len();
            }
            w.push_frame(f).unwrap();
            peak = peak.max(w.memory_bytes());
            if std::env::var("B2D_MEM_DEBUG").is_ok() {
                eprintln!("{i}: {:?}", w.memory_usage());
            }
        }
        w.end_episode().unwrap();
        peak = peak.max(w.memory_bytes());
    }
    w.finish().unwrap();
    // Each episode is one row group (the default row group is far larger), yet the writer holds
    // only the buffered rows, the pages being filled (8 KiB at least, one an image column
    // fills) and the stats state (5 sketches of 600 f32, histograms): finished pages wait on
    // disk.
    assert!(
        episode_bytes / 3 > 8 * 64 * 1024,
        "episodes of {episode_bytes} bytes are too small"
    );
    assert!(peak < buffer + 2 * 64 * 1024 + 64 * 1024, "peak {peak}");
    let reader = SerializedFileReader::new(File::open(&data_files(&out)[0]).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 3);
    assert_valid(&out);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn abort_episode_leaves_nothing() {
    let dir = tmpdir("abort");
    let out = dir.join("ds");
    let opts = WriterOptions {
        row_group_bytes: 4 * 1024,
        ..WriterOptions::default()
    };
    let mut w = DatasetWriter::create(&out, spec(), opts).unwrap();
    // Aborted as the first episode of a file: the file is removed.
    w.begin_episode("doomed", 40).unwrap();
    for i in 0..40 {
        w.push_frame(frame(9, i)).unwrap();
    }
    w.abort_episode();
    w.begin_episode("pick", 10).unwrap();
    for i in 0..10 {
        w.push_frame(frame(0, i)).unwrap();
    }
    w.end_episode().unwrap();
    // Aborted after a completed episode in the same file: the file is cut back.
    w.begin_episode("doomed too", 40).unwrap();
    for i in 0..40 {
        w.push_frame(frame(9, i)).unwrap();
    }
    w.abort_episode();
    w.begin_episode("place", 12).unwrap();
    for i in 0..12 {
        w.push_frame(frame(1, i)).unwrap();
    }
    let s = w.end_episode().unwrap();
    assert_eq!((s.episode_index, s.from_index, s.to_index), (1, 10, 22));
    // An empty episode is discarded with an error.
    w.begin_episode("empty", 0).unwrap();
    assert!(w.end_episode().is_err());
    let sum = w.finish().unwrap();
    assert_eq!(
        (sum.total_episodes, sum.total_frames, sum.total_tasks),
        (2, 22, 2)
    );
    assert_valid(&out);
    let mut rows = 0;
    for f in data_files(&out) {
        for b in read_all(&f) {
            rows += b.num_rows();
            assert!(ints(&b, "episode_index").iter().all(|e| *e < 2));
        }
    }
    assert_eq!(rows, 22);
    let tasks = read_all(&out.join("meta/tasks.parquet"));
    let t = tasks[0].column_by_name("task").unwrap().as_string::<i32>();
    assert_eq!(
        (0..t.len()).map(|i| t.value(i)).collect::<Vec<_>>(),
        ["pick", "place"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_frames_are_rejected_without_panic() {
    let dir = tmpdir("bad");
    let out = dir.join("ds");
    let mut w = DatasetWriter::create(&out, spec(), WriterOptions::default()).unwrap();
    assert!(w.push_frame(frame(0, 0)).is_err()); // no episode
    w.begin_episode("t", 5).unwrap();
    assert!(w.begin_episode("t", 5).is_err());
    let mut f = frame(0, 0);
    f.values.pop();
    assert!(w.push_frame(f).is_err());
    let mut f = frame(0, 0);
    f.values[0] = FeatureValue::Vector(vec![1.0; 3]);
    assert!(w.push_frame(f).is_err());
    let mut f = frame(0, 0);
    f.values[1] = FeatureValue::Vector(vec![f32::NAN]);
    assert!(w.push_frame(f).is_err());
    let mut f = frame(0, 0);
    f.values[2] = FeatureValue::Image {
        bytes: b"not a jpeg".to_vec().into(),
        format: ImageFormat::Jpeg,
    };
    assert!(w.push_frame(f).is_err());
    let mut f = frame(0, 0);
    f.values[2] = FeatureValue::Vector(vec![0.0]);
    assert!(w.push_frame(f).is_err());
    // Rejected frames left no trace: the episode continues from frame 0.
    for i in 0..5 {
        w.push_frame(frame(0, i)).unwrap();
    }
    assert_eq!(w.end_episode().unwrap().frames, 5);
    w.finish().unwrap();
    assert_valid(&out);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unfinished_writer_leaves_no_output() {
    let dir = tmpdir("unfinished");
    let out = dir.join("ds");
    {
        let mut w = DatasetWriter::create(&out, spec(), WriterOptions::default()).unwrap();
        w.begin_episode("t", 3).unwrap();
        for i in 0..3 {
            w.push_frame(frame(0, i)).unwrap();
        }
        w.end_episode().unwrap();
        assert!(w.staging_dir().exists());
        // dropped without finish
    }
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "staging left behind"
    );
    // finish with an open episode fails and publishes nothing.
    let mut w = DatasetWriter::create(&out, spec(), WriterOptions::default()).unwrap();
    w.begin_episode("t", 3).unwrap();
    w.push_frame(frame(0, 0)).unwrap();
    assert!(w.finish().is_err());
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_output_needs_overwrite() {
    let dir = tmpdir("overwrite");
    let out = dir.join("ds");
    write_dataset(&out, WriterOptions::default());
    assert!(DatasetWriter::create(&out, spec(), WriterOptions::default()).is_err());
    let opts = WriterOptions {
        overwrite: true,
        ..WriterOptions::default()
    };
    write_dataset(&out, opts.clone());
    assert_valid(&out);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // A non-dataset directory is never replaced.
    let other = dir.join("precious");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("thesis.tex"), "x").unwrap();
    assert!(DatasetWriter::create(&other, spec(), opts).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rewrites a parquet file through `f`, keeping its schema metadata.
fn rewrite(path: &Path, f: impl Fn(RecordBatch) -> RecordBatch) {
    let batches: Vec<RecordBatch> = read_all(path).into_iter().map(f).collect();
    let schema = batches[0].schema();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn edit_info(out: &Path, f: impl Fn(&mut Value)) {
    let p = out.join("meta/info.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

fn problems_with(base: &Path, name: &str, inject: impl Fn(&Path)) -> Vec<String> {
    let out = base.parent().unwrap().join(name);
    let _ = std::fs::remove_dir_all(&out);
    copy_dir(base, &out);
    inject(&out);
    let p = validate(&out).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    p
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn validate_catches_injected_faults() {
    let dir = tmpdir("faults");
    let base = dir.join("base");
    write_dataset(&base, WriterOptions::default());
    assert_valid(&base);
    let data = "data/chunk-000/file-000.parquet";
    let has = |p: &[String], needle: &str| {
        assert!(
            p.iter().any(|m| m.contains(needle)),
            "no problem mentioning {needle:?} in {p:#?}"
        )
    };

    let p = problems_with(&base, "extra", |out| {
        rewrite(&out.join(data), |b| {
            let mut fields: Vec<Field> =
                b.schema().fields().iter().map(|f| (**f).clone()).collect();
            fields.push(Field::new("surprise", DataType::Int64, true));
            let schema = Arc::new(Schema::new_with_metadata(
                fields,
                b.schema().metadata().clone(),
            ));
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            cols.push(Arc::new(Int64Array::from(vec![0; b.num_rows()])));
            RecordBatch::try_new(schema, cols).unwrap()
        })
    });
    has(&p, "column surprise is not a declared");

    let p = problems_with(&base, "total", |out| {
        edit_info(out, |v| v["total_frames"] = 96.into())
    });
    has(&p, "total_frames is 96");

    let p = problems_with(&base, "index", |out| {
        rewrite(&out.join(data), |b| {
            let idx: Vec<i64> = ints(&b, "index")
                .into_iter()
                .map(|i| if i == 40 { 41 } else { i })
                .collect();
            let k = b.schema().index_of("index").unwrap();
            let mut cols = b.columns().to_vec();
            cols[k] = Arc::new(Int64Array::from(idx));
            RecordBatch::try_new(b.schema(), cols).unwrap()
        })
    });
    has(&p, "index 41, expected 40");

    let p = problems_with(&base, "footer", |out| {
        let f = out.join(data);
        let len = std::fs::metadata(&f).unwrap().len();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len - 8)
            .unwrap();
    });
    has(&p, "not a readable parquet file");

    let p = problems_with(&base, "missing_feature", |out| {
        edit_info(out, |v| {
            v["features"].as_object_mut().unwrap().remove("action");
        })
    });
    has(&p, "column action is not a declared");

    let p = problems_with(&base, "tasks", |out| {
        let t = out.join("meta/tasks.parquet");
        let batches = read_all(&t);
        let fields: Vec<Field> = batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let mut w = ArrowWriter::try_new(File::create(&t).unwrap(), schema.clone(), None).unwrap();
        for b in batches {
            w.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
                .unwrap();
        }
        w.close().unwrap();
    });
    has(&p, "pandas metadata is missing");

    let p = problems_with(&base, "stats", |out| {
        let s = out.join("meta/stats.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&s).unwrap()).unwrap();
        v["observation.state"]
            .as_object_mut()
            .unwrap()
            .remove("q01");
        v["observation.images.cam"]["mean"] = serde_json::json!([0.1, 0.2, 0.3]);
        std::fs::write(&s, v.to_string()).unwrap();
    });
    has(&p, "observation.state: missing q01");
    has(&p, "observation.images.cam: mean has shape");

    let p = problems_with(&base, "stray", |out| {
        std::fs::write(out.join("data/chunk-000/episode_000000.parquet"), "x").unwrap();
    });
    has(&p, "unexpected entry");

    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes the test dataset to `$B2D_KEEP_DATASET` for checks with external readers
/// (pyarrow, lerobot); does nothing without that variable.
#[test]
fn keep_dataset_for_external_readers() {
    let Ok(out) = std::env::var("B2D_KEEP_DATASET") else {
        return;
    };
    let opts = WriterOptions {
        overwrite: true,
        row_group_bytes: 16 * 1024,
        data_file_bytes: 100 * 1024,
        ..WriterOptions::default()
    };
    write_dataset(Path::new(&out), opts);
    assert_valid(Path::new(&out));
}
