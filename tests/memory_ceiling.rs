//! The memory ceiling, proven with a counting global allocator (issue 4, "Prove it").
//!
//! Every conversion here runs in this process under [`CountingJemalloc`], which wraps jemalloc
//! (the binary's allocator, with the binary's `malloc_conf`) and counts the bytes the program
//! holds and their peak. The tests hold [`SERIAL`] so that no other test allocates during a
//! measured run.
//!
//! * **Minimal workable ceiling.** `run` refuses a ceiling below the memory plan's floor
//!   (`MemoryPlan::new`): `baseline RSS + RESERVE_BYTES + largest chunk in flight +
//!   MIN_BUFFER_BYTES`, the baseline being the RSS when `run` starts. [`plan_floor`] gets that
//!   floor from `run` itself (at a 1 MiB ceiling it refuses and says what it needs; the test
//!   checks this equals the formula) and [`run_at_minimal_ceiling`] runs at the floor plus
//!   [`DRIFT`] (256 KiB) for the baseline moving between two runs. Below the floor the plan
//!   refuses by design, so this is the smallest ceiling `run` accepts, up to that slack; the
//!   tests assert that it also *works* (the run finishes, the monitor never sees RSS above it).
//! * **Bound checked.** At that ceiling the heap the run adds (peak counted bytes minus the
//!   bytes held when it started) must be at most `ceiling − baseline RSS` (`start_rss` of the
//!   run's report): every live heap byte is resident memory on top of the baseline, so a run
//!   needing more heap than that would break the ceiling whatever else it does. We also reset
//!   the kernel's peak RSS (`/proc/self/clear_refs`, `5`) before the run and check `VmHWM` ≤
//!   ceiling afterwards: the ceiling is on resident memory, measured by the kernel, not only on
//!   the heap.
//! * **Same data at every ceiling.** The data Parquet files are decoded and compared column by
//!   column (all files concatenated, so row-group and file boundaries may differ), and so are
//!   `meta/episodes`, `meta/tasks.parquet`, `meta/info.json` and `meta/stats.json`.
//! * **Too small fails cleanly**, before the run (a chunk cannot fit) and in the middle of it
//!   (one message larger than its buffer, after row groups were written): a typed `OverBudget`
//!   error naming the item, its size, the ceiling and a `--max-memory` hint; nothing at the
//!   output path and no `*.partial-*` staging directory.
//! * **No leak over hundreds of chunks**, from the `--memory-log` rows; see [`no_leak_over_chunks`].

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use arrow::array::{ArrayRef, RecordBatch};
use bag2dataset::Error;
use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression, ConnectionInfo, Payload};
use bag2dataset::convert::run::{RunOptions, RunReport, run};
use bag2dataset::demo::{
    COMPRESSED_IMAGE_MD5, JOINT_STATE_MD5, compressed_image_definition, joint_state_definition,
};
use bag2dataset::input::Recording;
use bag2dataset::memory::parse_size;
use bag2dataset::memory::plan::{DEFAULT_CEILING, MIN_BUFFER_BYTES, RESERVE_BYTES};
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

// ---------------------------------------------------------------------------------------------
// Counting allocator

/// jemalloc, counting the bytes requested and not yet freed, and their peak.
struct CountingJemalloc;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static GLOBAL: CountingJemalloc = CountingJemalloc;

/// The binary's jemalloc options (src/main.rs), so this process returns freed pages the same way.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"dirty_decay_ms:500,muzzy_decay_ms:0\0";

fn grow(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to jemalloc; only counters are updated around it.
unsafe impl GlobalAlloc for CountingJemalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { tikv_jemallocator::Jemalloc.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { tikv_jemallocator::Jemalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { tikv_jemallocator::Jemalloc.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        p
    }
}

/// Starts a measurement: the peak becomes what is held now, which is returned.
fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Resets the kernel's peak RSS (`VmHWM`) to the current RSS; false where not supported.
fn reset_kernel_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` in bytes.
fn kernel_peak_rss() -> u64 {
    bag2dataset::memory::snapshot().rss_peak
}

/// Serialises the tests: the counters and the RSS are per process.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("b2d-memceil-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn demo_bag() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/demo.bag")
}

/// SplitMix64, for deterministic jitter and pixels.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A JPEG of `w`×`h`: a moving gradient with `noise` (0-255) of per-pixel noise.
fn jpeg(seed: u64, w: u32, h: u32, noise: u64, quality: u8) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let r = mix(seed.wrapping_mul(1_000_003) ^ u64::from(y * w + x));
            for c in 0..3u64 {
                let base = (u64::from(x + y) + seed * 3 + c * 60) % 256;
                let n = if noise == 0 {
                    0
                } else {
                    (r >> (c * 8)) % noise
                };
                rgb.push(((base + n) % 256) as u8);
            }
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(&rgb, w, h, ExtendedColorType::Rgb8)
        .expect("encoding an in-memory JPEG cannot fail");
    out
}

const JOINTS: usize = 28;
const T0: u64 = 1_700_000_000_000_000_000;

/// What goes into a synthetic bag.
struct SynthSpec {
    seconds: u64,
    chunk_threshold: usize,
    /// Replace the head camera frame at this fraction of the recording by a large, noisy
    /// 512×512 JPEG (hundreds of KiB).
    big_image_at: Option<f64>,
}

/// Writes a humanoid-like bag with the project's bag writer: two 30 Hz cameras of small JPEGs
/// (160×120), `/joint_states` (28 joints, position/velocity/effort) and `/joint_cmd` (positions)
/// at 500 Hz, with stamp jitter and transport latency; record time = stamp + latency.
fn write_synthetic_bag(path: &Path, spec: &SynthSpec) -> u64 {
    let opts = BagWriterOptions {
        compression: Compression::None,
        chunk_threshold: spec.chunk_threshold,
        ..BagWriterOptions::default()
    };
    let mut w = BagWriter::new(BufWriter::new(File::create(path).unwrap()), opts).unwrap();
    let (img_def, js_def) = (compressed_image_definition(), joint_state_definition());
    let mut conn = |topic: &str, image: bool| {
        let (t, md5, def) = if image {
            (
                "sensor_msgs/CompressedImage",
                COMPRESSED_IMAGE_MD5,
                img_def.as_str(),
            )
        } else {
            ("sensor_msgs/JointState", JOINT_STATE_MD5, js_def.as_str())
        };
        w.add_connection_info(&ConnectionInfo::new(topic, t, md5, def).callerid("/synth"))
            .unwrap()
    };
    let cams = [
        conn("/cam_h/color/image_raw/compressed", true),
        conn("/cam_l/color/image_raw/compressed", true),
    ];
    let state = conn("/joint_states", false);
    let cmd = conn("/joint_cmd", false);
    let names: Vec<String> = (0..JOINTS).map(|j| format!("joint_{j:02}")).collect();

    // (record time, kind, sequence): payloads are made while writing, in record-time order.
    let duration = spec.seconds * 1_000_000_000;
    let mut events: Vec<(u64, u32, u64)> = Vec::new();
    let cam_period = 1_000_000_000 / 30;
    for (k, &c) in cams.iter().enumerate() {
        for i in 0..duration / cam_period {
            let stamp =
                T0 + i * cam_period + k as u64 * 4_000_000 + mix(i * 7 + k as u64) % 2_000_000;
            events.push((
                stamp + 15_000_000 + mix(i + 99 * k as u64) % 10_000_000,
                c,
                i,
            ));
        }
    }
    for i in 0..duration / 2_000_000 {
        let stamp = T0 + i * 2_000_000;
        events.push((stamp + 300_000 + mix(i) % 400_000, state, i));
        events.push((stamp + 200_000 + mix(i + 5) % 300_000, cmd, i));
    }
    events.sort_unstable();
    let big_at = spec
        .big_image_at
        .map(|f| (f * (duration / cam_period) as f64) as u64);
    for &(time, c, i) in &events {
        let mut p = Payload::new();
        if cams.contains(&c) {
            let stamp = time - 15_000_000;
            p.header(
                i as u32,
                (stamp / 1_000_000_000) as u32,
                (stamp % 1_000_000_000) as u32,
                "cam",
            );
            let img = if c == cams[0] && Some(i) == big_at {
                jpeg(i, 512, 512, 255, 100)
            } else {
                jpeg(i * 2 + u64::from(c), 160, 120, 24, 85)
            };
            p.string("jpeg").bytes(&img);
        } else {
            let stamp = T0 + i * 2_000_000;
            let t = i as f64 * 0.002;
            let q: Vec<f64> = (0..JOINTS)
                .map(|j| (t * (0.3 + j as f64 * 0.05) + j as f64).sin())
                .collect();
            p.header(
                i as u32,
                (stamp / 1_000_000_000) as u32,
                (stamp % 1_000_000_000) as u32,
                "",
            );
            p.string_array(&names);
            if c == state {
                let v: Vec<f64> = q.iter().map(|x| x * 0.5).collect();
                let e: Vec<f64> = q.iter().map(|x| 2.0 - x).collect();
                p.f64_array(&q).f64_array(&v).f64_array(&e);
            } else {
                let q: Vec<f64> = q.iter().map(|x| x + 0.01).collect();
                p.f64_array(&q).f64_array(&[]).f64_array(&[]);
            }
        }
        w.write(c, time, p.as_slice()).unwrap();
    }
    w.flush_chunk().unwrap();
    let chunks = w.chunk_count() as u64;
    w.finish()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    chunks
}

/// The larger synthetic bag: 30 s, about 44 MB in about 600 chunks (written once per process).
fn synthetic_bag() -> &'static Path {
    static BAG: OnceLock<PathBuf> = OnceLock::new();
    BAG.get_or_init(|| {
        // Shared by the tests of this process and never removed by them: kept in cargo's
        // per-target temp dir (one fixed name, rewritten per run), not in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("memory_ceiling-bags");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let path = dir.join("synthetic.bag");
        let spec = SynthSpec {
            seconds: 30,
            chunk_threshold: 72 * 1024,
            big_image_at: None,
        };
        let chunks = write_synthetic_bag(&path, &spec);
        assert!(chunks >= 250, "synthetic bag has only {chunks} chunks");
        path
    })
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Slack over the plan's floor for the baseline RSS moving between two runs (256 KiB): pages
/// jemalloc has not returned yet, page tables, the kernel's file pages.
const DRIFT: u64 = 256 << 10;

/// Whether `e` is the memory plan refusing the ceiling before the run started.
fn plan_refused(e: &Error) -> Option<u64> {
    match e {
        Error::OverBudget { needed, item, .. } if item.contains("plus the process baseline") => {
            Some(*needed)
        }
        _ => None,
    }
}

/// The memory plan's floor for `bag` with this process's baseline RSS now: `run` at a 1 MiB
/// ceiling refuses with the floor it computed (`needed`), which must equal ours.
fn plan_floor(bag: &Path) -> u64 {
    let max_chunk = Recording::open(bag)
        .unwrap()
        .largest_pass_need()
        .unwrap()
        .unwrap()
        .0;
    let e = run(&options(
        bag,
        Path::new("/nonexistent/never-written"),
        1 << 20,
    ))
    .unwrap_err();
    let needed = plan_refused(&e).unwrap_or_else(|| panic!("not the plan's refusal: {e}"));
    let baseline = needed - RESERVE_BYTES - MIN_BUFFER_BYTES - max_chunk;
    assert!(baseline > 0 && baseline < 256 << 20, "baseline {baseline}");
    needed
}

/// Runs `opts` at the minimal workable ceiling: the plan's floor plus [`DRIFT`]; should the
/// baseline have grown past the slack (the plan refuses), again at the new floor plus slack.
fn run_at_minimal_ceiling(mut opts: RunOptions) -> (u64, bag2dataset::Result<Measured>) {
    let mut floor = plan_floor(&opts.inputs[0]);
    for _ in 0..5 {
        opts.ceiling = floor + DRIFT;
        match measured_run(&opts) {
            Err(e) if plan_refused(&e).is_some() => floor = plan_refused(&e).unwrap_or(floor),
            r => return (opts.ceiling, r),
        }
    }
    panic!("the plan kept refusing; last floor {floor}");
}

fn options(bag: &Path, out: &Path, ceiling: u64) -> RunOptions {
    RunOptions {
        inputs: vec![bag.to_path_buf()],
        output: out.to_path_buf(),
        config: None,
        ceiling,
        fps: None,
        task: Some("memory test".into()),
        overwrite: false,
        memory_log: None,
        memory_chart: None,
        progress: false,
        ..RunOptions::default()
    }
}

/// One measured run: its report, the heap it added at its peak, and the kernel's peak RSS
/// (`None` where it cannot be reset).
struct Measured {
    report: RunReport,
    heap_added: usize,
    kernel_peak: Option<u64>,
}

fn measured_run(opts: &RunOptions) -> bag2dataset::Result<Measured> {
    let hwm = reset_kernel_peak();
    let before = reset_peak();
    let report = run(opts)?;
    let heap_added = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let kernel_peak = hwm.then(kernel_peak_rss);
    Ok(Measured {
        report,
        heap_added,
        kernel_peak,
    })
}

/// Converts `bag` at its minimal ceiling and checks the bounds of the module docs.
fn check_minimal_ceiling(bag: &Path, out: &Path, memory_log: Option<PathBuf>) -> Measured {
    let mut opts = options(bag, out, 0);
    opts.memory_log = memory_log;
    let (ceiling, m) = run_at_minimal_ceiling(opts);
    let m = m.unwrap_or_else(|e| {
        panic!(
            "{}: conversion at the minimal ceiling {ceiling} failed: {e}",
            bag.display()
        )
    });
    let mem = &m.report.memory;
    let allowed = ceiling - mem.start_rss;
    eprintln!(
        "{}: minimal ceiling {:.2} MiB (baseline {:.2} MiB): heap added {:.2} MiB of {:.2} MiB allowed; \
         kernel peak RSS {:?} MiB; budgets {:?}",
        bag.file_name().unwrap().to_string_lossy(),
        ceiling as f64 / 1048576.0,
        mem.start_rss as f64 / 1048576.0,
        m.heap_added as f64 / 1048576.0,
        allowed as f64 / 1048576.0,
        m.kernel_peak
            .map(|p| format!("{:.2}", p as f64 / 1048576.0)),
        mem.budgets,
    );
    assert!(
        m.heap_added as u64 <= allowed,
        "{}: the run added {} bytes of heap, more than ceiling {ceiling} − baseline RSS {} = {allowed}",
        bag.display(),
        m.heap_added,
        mem.start_rss
    );
    if let Some(peak) = m.kernel_peak {
        assert!(
            peak <= ceiling,
            "{}: kernel peak RSS {peak} > ceiling {ceiling}",
            bag.display()
        );
    }
    assert!(
        mem.peak_rss <= ceiling,
        "reported peak RSS {} > ceiling {ceiling}",
        mem.peak_rss
    );
    for b in &mem.budgets {
        assert!(
            b.peak <= b.capacity,
            "budget {}: held {} of {}",
            b.name,
            b.peak,
            b.capacity
        );
    }
    let problems = bag2dataset::dataset::validate(out).unwrap();
    assert!(problems.is_empty(), "validate: {problems:?}");
    m
}

// ---------------------------------------------------------------------------------------------
// Comparing datasets

/// Every Parquet file under `dir` (sorted by path), decoded and concatenated per column.
fn parquet_columns(dir: &Path) -> BTreeMap<String, ArrayRef> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no parquet files in {}", dir.display());
    let mut batches: Vec<RecordBatch> = Vec::new();
    for f in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    let schema = batches[0].schema();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let parts: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(i).as_ref()).collect();
            (f.name().clone(), arrow::compute::concat(&parts).unwrap())
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Asserts that two datasets hold the same data (see the module docs).
fn assert_same_data(a: &Path, b: &Path) {
    for sub in ["data", "meta/episodes"] {
        let (x, y) = (parquet_columns(&a.join(sub)), parquet_columns(&b.join(sub)));
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "{sub}: columns differ"
        );
        for (name, col) in &x {
            assert!(!col.is_empty(), "{sub}/{name}: no rows");
            assert_eq!(col.len(), y[name].len(), "{sub}/{name}: row counts differ");
            assert!(
                col.as_ref() == y[name].as_ref(),
                "{sub}/{name}: values differ between {} and {}",
                a.display(),
                b.display()
            );
        }
    }
    for f in ["meta/info.json", "meta/stats.json"] {
        assert_eq!(
            json(&a.join(f)),
            json(&b.join(f)),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    let tasks = |d: &Path| std::fs::read(d.join("meta/tasks.parquet")).unwrap();
    assert_eq!(tasks(a), tasks(b), "meta/tasks.parquet differs");
}

/// Converts `bag` at the minimal, the default and a huge ceiling and compares the outputs.
fn minimal_default_huge(bag: &Path, name: &str) {
    let dir = scratch(name);
    let minimal = check_minimal_ceiling(bag, &dir.join("minimal"), None);
    let default = measured_run(&options(bag, &dir.join("default"), DEFAULT_CEILING)).unwrap();
    let huge = measured_run(&options(bag, &dir.join("huge"), 4 << 30)).unwrap();
    assert!(minimal.report.frames > 0);
    for r in [&default.report, &huge.report] {
        assert_eq!(r.frames, minimal.report.frames);
    }
    eprintln!(
        "{name}: {} frames; heap added: minimal {:.2} MiB, default {:.2} MiB, huge {:.2} MiB",
        minimal.report.frames,
        minimal.heap_added as f64 / 1048576.0,
        default.heap_added as f64 / 1048576.0,
        huge.heap_added as f64 / 1048576.0
    );
    assert_same_data(&dir.join("minimal"), &dir.join("default"));
    assert_same_data(&dir.join("minimal"), &dir.join("huge"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn demo_bag_at_minimal_ceiling_stays_under_it_and_matches_default_and_huge() {
    let _g = serial();
    minimal_default_huge(&demo_bag(), "demo");
}

#[test]
fn synthetic_bag_at_minimal_ceiling_stays_under_it_and_matches_default_and_huge() {
    let _g = serial();
    minimal_default_huge(synthetic_bag(), "synthetic");
}

/// Nothing at `out`, and no staging directory beside it.
fn assert_nothing_left(out: &Path) {
    assert!(!out.exists(), "{} exists after a failed run", out.display());
    let parent = out.parent().unwrap();
    let left: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(
        left.is_empty(),
        "staging directories left in {}: {left:?}",
        parent.display()
    );
}

#[test]
fn ceiling_below_the_largest_chunk_fails_before_writing_anything() {
    let _g = serial();
    let dir = scratch("too-small");
    let bag = synthetic_bag();
    let out = dir.join("out");
    let ceiling = 4u64 << 20;
    let e = run(&options(bag, &out, ceiling)).unwrap_err();
    let msg = e.to_string();
    let Error::OverBudget {
        needed,
        ceiling: c,
        hint,
        ..
    } = e
    else {
        panic!("not OverBudget: {msg}")
    };
    assert_eq!(c, ceiling);
    assert!(needed > ceiling);
    // The hint names a ceiling that holds the item.
    assert!(
        parse_size(&hint).unwrap() >= needed,
        "hint {hint} < {needed}"
    );
    for part in [
        "chunk at offset".to_string(),
        bag.display().to_string(),
        format!("needs {needed} bytes"),
        format!("memory ceiling of {ceiling} bytes"),
        "--max-memory".to_string(),
    ] {
        assert!(msg.contains(&part), "error lacks {part:?}: {msg}");
    }
    assert_nothing_left(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn message_larger_than_its_buffer_fails_mid_run_and_leaves_no_dataset() {
    let _g = serial();
    let dir = scratch("big-item");
    let bag = dir.join("big-image.bag");
    let spec = SynthSpec {
        seconds: 6,
        chunk_threshold: 72 * 1024,
        big_image_at: Some(0.7),
    };
    write_synthetic_bag(&bag, &spec);
    let out = dir.join("out");
    let mut opts = options(&bag, &out, 0);
    opts.memory_log = Some(dir.join("mem.csv"));
    let (ceiling, r) = run_at_minimal_ceiling(opts);
    let e = r
        .err()
        .expect("the big image cannot fit the minimal ceiling");
    let msg = e.to_string();
    let Error::OverBudget {
        needed,
        available,
        ceiling: c,
        ..
    } = e
    else {
        panic!("not OverBudget: {msg}")
    };
    assert_eq!(c, ceiling);
    assert!(needed > available && needed > 200_000, "{msg}");
    for part in [
        "a message of /cam_h/color/image_raw/compressed".to_string(),
        format!("({needed} bytes)"),
        "samples in flight".to_string(),
        format!("memory ceiling of {ceiling} bytes"),
        "--max-memory".to_string(),
    ] {
        assert!(msg.contains(&part), "error lacks {part:?}: {msg}");
    }
    // It failed in the middle: chunks were read and frames written before the big image.
    let log = std::fs::read_to_string(dir.join("mem.csv")).unwrap();
    let rows: Vec<&str> = log.lines().skip(1).collect();
    assert!(
        rows.len() > 20,
        "only {} chunks were read before the failure",
        rows.len()
    );
    let frames_written: u64 = rows
        .last()
        .unwrap()
        .split(',')
        .nth(5)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        frames_written > 50,
        "only {frames_written} frames written before the failure"
    );
    assert_nothing_left(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_reports_a_too_small_ceiling_with_exit_code_1() {
    let dir = scratch("cli");
    let out = dir.join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bag2dataset"))
        .env("BAG2DATASET_SETTLE", "0")
        .args([
            "convert",
            demo_bag().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--max-memory",
            "2MiB",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(o.stdout.is_empty());
    assert!(
        stderr.contains("error: chunk at offset")
            && stderr.contains("memory ceiling of 2097152 bytes")
            && stderr.contains("rerun with a larger --max-memory (at least "),
        "{stderr}"
    );
    assert_nothing_left(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Over ~600 chunks at the minimal ceiling, what stays allocated does not creep up.
///
/// Criterion: split the per-chunk rows of `--memory-log` into tenths and take the *lowest*
/// jemalloc `allocated` of each tenth — the floor the process returns to between chunks, when
/// its buffers are emptiest (the highest values only say how full a buffer happened to be).
/// The first tenth is the warm-up (windows, builders, encoders and stats state fill up to their
/// steady size: about 2 MiB here) and is left out. Over the other nine, the least-squares
/// slope of the floor against the chunk number must stay under [`LEAK_SLOPE`] bytes per chunk,
/// and no floor may be more than [`LEAK_TOLERANCE`] above their median. The floors move up and
/// down by about ±0.4 MiB with thread timing (a single pair of tenths is too noisy to compare);
/// the slope averages that out: over ~600 chunks it stays within about ±1 KiB per chunk. An
/// injected leak of 4 KiB per chunk gives a slope of about 4 KiB and fails. The per-episode state that
/// legitimately grows (Parquet row-group metadata kept for the footer, the memory log's chart
/// points, stats sketches) is far below it.
#[test]
fn no_leak_over_chunks() {
    let _g = serial();
    let dir = scratch("leak");
    let log = dir.join("mem.csv");
    check_minimal_ceiling(synthetic_bag(), &dir.join("out"), Some(log.clone()));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (alloc, inc) = (col("allocated"), col("increase"));
    let rows: Vec<(i64, i64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[alloc].parse().unwrap(), f[inc].parse().unwrap())
        })
        .collect();
    assert!(rows.len() >= 250, "only {} chunk rows", rows.len());
    // The increases are consecutive differences of `allocated`.
    for w in rows.windows(2) {
        assert_eq!(w[1].1, w[1].0 - w[0].0);
    }
    let tenth = rows.len() / 10;
    let floors: Vec<i64> = rows
        .chunks(tenth)
        .take(10)
        .map(|c| c.iter().map(|r| r.0).min().unwrap())
        .collect();
    let ceilings: Vec<i64> = rows
        .chunks(tenth)
        .take(10)
        .map(|c| c.iter().map(|r| r.0).max().unwrap())
        .collect();
    eprintln!(
        "{} chunks; allocated floor per tenth (KiB): {:?}; highest: {:?}",
        rows.len(),
        floors.iter().map(|f| f / 1024).collect::<Vec<_>>(),
        ceilings.iter().map(|f| f / 1024).collect::<Vec<_>>()
    );
    let xs: Vec<f64> = (1..10).map(|k| (k * tenth) as f64).collect();
    let ys: Vec<f64> = floors[1..].iter().map(|&f| f as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / 9.0, ys.iter().sum::<f64>() / 9.0);
    let slope = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / xs.iter().map(|x| (x - mx) * (x - mx)).sum::<f64>();
    eprintln!("slope of the floor: {slope:.0} bytes per chunk");
    assert!(
        slope <= LEAK_SLOPE,
        "allocated floor rises by {slope:.0} bytes per chunk ({floors:?})"
    );
    let mut sorted = floors[1..].to_vec();
    sorted.sort_unstable();
    let median = sorted[4];
    for (k, f) in floors.iter().enumerate().skip(1) {
        assert!(
            f - median <= LEAK_TOLERANCE,
            "allocated floor of tenth {k} is {} bytes above the median ({floors:?})",
            f - median
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Largest rise of the retained-memory floor per chunk (2.5 KiB; see [`no_leak_over_chunks`]).
/// History: 2.5 KiB over a bag of ~300 chunks, raised to 4 KiB on 2026-12-02 when runs measured
/// 1.3-2.5 KiB (and one CI run on 2026-12-03 6 KiB): over 300 chunks the floors were still
/// settling after the first tenth. Since 2026-12-03 the bag has ~600 chunks: 14 runs measured
/// -1.1 to +0.2 KiB per chunk, and a leak injected into the chunk reader (4 KiB per chunk)
/// 3.7-4.1 KiB, which fails here every time.
const LEAK_SLOPE: f64 = 2560.0;

/// Most a floor may stand above the median floor (2 MiB; see [`no_leak_over_chunks`]).
const LEAK_TOLERANCE: i64 = 2 << 20;
