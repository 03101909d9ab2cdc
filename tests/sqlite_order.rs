//! SQLite recordings are read in receive-time order, `(timestamp, id)`, whatever order their
//! rows were inserted in: read units come in time order without overlapping, `dump` and the
//! converter see messages by time, a file without `timestamp_idx` gets a temporary order on
//! disk, no query sorts, and a split bag still merges its files by time.

#[path = "common/db3.rs"]
mod db3;

use std::path::{Path, PathBuf};
use std::process::Command;

use bag2dataset::commands::dump::{DumpFilter, dump_recording};
use bag2dataset::input::Recording;
use bag2dataset::ros2::sqlite::{SqliteFile, TimeOrder, UNIT_BYTES};
use db3::{Db3, metadata_yaml, string_msg};

const BIN: &str = env!("CARGO_BIN_EXE_bag2dataset");
const T0: u64 = 1_700_000_000_000_000_000;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("b2d-sqlorder-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A deterministic permutation of `0..n` (far from the identity).
fn shuffled(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// `n` String messages on two topics whose text names their time; row ids in shuffled
/// order, and runs of equal timestamps (every 4 messages share one) so the cursor's
/// `(timestamp, id)` key has ties to break across unit boundaries. Messages of `size` bytes.
/// Returns the (time, text) pairs in receive-time order (ties by row id).
fn write_shuffled(path: &Path, n: u64, size: usize, time_index: bool) -> Vec<(u64, String)> {
    let db = Db3::create(path, time_index);
    db.topic(1, "/a", "std_msgs/msg/String");
    db.topic(2, "/b", "std_msgs/msg/String");
    let tx = db.db.unchecked_transaction().unwrap();
    let perm = shuffled(n);
    let mut want = Vec::new();
    for (row, &k) in perm.iter().enumerate() {
        let t = T0 + (k / 4) * 1_000_000;
        let text = format!("{k:08}{}", "x".repeat(size.saturating_sub(8)));
        db.message(row as i64 + 1, 1 + (k % 2) as i64, t, &string_msg(&text));
        want.push((t, row as i64 + 1, text));
    }
    tx.commit().unwrap();
    want.sort();
    want.into_iter().map(|(t, _, s)| (t, s)).collect()
}

fn dumped(rec: &Recording) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    dump_recording(rec, &DumpFilter::default(), |l| {
        out.push((
            l["time_ns"].as_u64().expect("time"),
            l["data"]["data"].as_str().expect("decoded").to_string(),
        ));
        true
    })
    .expect("dumps");
    out
}

/// Messages as the converter reads them: unit after unit, in each unit's storage order.
fn unit_order(rec: &Recording) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    for ci in 0..rec.index().chunks.len() {
        let u = rec.read_unit(ci, None, true).expect("read unit");
        assert!(u.cut.is_none());
        out.extend(u.messages().map(|m| (m.time_ns, m.data.len())));
    }
    out
}

fn check_time_ordered(path: &Path, want: &[(u64, String)], order: TimeOrder) {
    let f = SqliteFile::open(path, false, false).expect("opens");
    assert_eq!(f.order, order, "{}", path.display());
    // No query of the read path sorts (no temp B-tree for an ORDER BY).
    for plan in f.query_plans().expect("plans") {
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    let rec = Recording::open(path).expect("recording opens");
    let chunks = &rec.index().chunks;
    assert!(chunks.len() >= 4, "several units: {}", chunks.len());
    for w in chunks.windows(2) {
        assert!(w[0].end_ns <= w[1].start_ns, "units in time order: {w:?}");
    }
    for c in chunks.iter() {
        assert!(
            c.uncompressed_size as u64 <= UNIT_BYTES,
            "a unit of small messages stays within {UNIT_BYTES}: {}",
            c.uncompressed_size
        );
    }
    let read = unit_order(&rec);
    assert_eq!(read.len(), want.len());
    assert!(
        read.windows(2).all(|p| p[0].0 <= p[1].0),
        "unit reads by time"
    );
    assert_eq!(
        read.iter().map(|m| m.0).collect::<Vec<_>>(),
        want.iter().map(|m| m.0).collect::<Vec<_>>()
    );
}

#[test]
fn rows_inserted_out_of_time_order_read_and_dump_by_time() {
    let dir = tmp("indexed");
    let path = dir.join("shuffled.db3");
    let (n, size) = (600, 9_000);
    let want = write_shuffled(&path, n, size, true);
    check_time_ordered(&path, &want, TimeOrder::Index);
    let rec = Recording::open(&path).unwrap();
    assert_eq!(dumped(&rec), want, "dump in (timestamp, id) order");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_without_timestamp_idx_gets_a_temporary_order_on_disk() {
    let dir = tmp("noindex");
    let path = dir.join("old.db3");
    let (n, size) = (600, 9_000);
    let want = write_shuffled(&path, n, size, false);
    check_time_ordered(&path, &want, TimeOrder::TempTable);
    let rec = Recording::open(&path).unwrap();
    assert_eq!(dumped(&rec), want);
    // The file is untouched (read-only open): no index was added to it.
    let db = rusqlite::Connection::open(&path).unwrap();
    let indexes: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two storage files whose times interleave and whose topic ids differ: `dump` merges them
/// by time (ties in file order), each line naming its file; `info` counts both.
#[test]
fn a_split_bag_merges_its_files_by_time() {
    let dir = tmp("split");
    let bag = dir.join("split_bag");
    std::fs::create_dir_all(&bag).unwrap();
    let mut want: Vec<(u64, usize, String)> = Vec::new();
    for (fi, name) in ["split_0.db3", "split_1.db3"].iter().enumerate() {
        let db = Db3::create(&bag.join(name), true);
        // Topic ids swapped between the files, as rosbag2 numbers them per file.
        let (a, b) = if fi == 0 { (1, 2) } else { (2, 1) };
        db.topic(a, "/a", "std_msgs/msg/String");
        db.topic(b, "/b", "std_msgs/msg/String");
        let tx = db.db.unchecked_transaction().unwrap();
        for (row, k) in shuffled(200).into_iter().enumerate() {
            // File 0 has even steps, file 1 odd ones; every tenth step both (a tie).
            let step = k * 2 + fi as u64;
            let t = if k.is_multiple_of(10) {
                T0 + k * 2
            } else {
                T0 + step
            };
            let text = format!("f{fi}-{k}");
            db.message(
                row as i64 + 1,
                if k.is_multiple_of(3) { a } else { b },
                t,
                &string_msg(&text),
            );
            want.push((t, fi, text));
        }
        tx.commit().unwrap();
    }
    // Ties: file order, then row id; within a file no two rows share a time except across files.
    want.sort_by_key(|x| (x.0, x.1));
    let counts = {
        let a = want.iter().filter(|w| {
            let k: u64 = w.2.split('-').nth(1).unwrap().parse().unwrap();
            k.is_multiple_of(3)
        });
        a.count() as u64
    };
    std::fs::write(
        bag.join("metadata.yaml"),
        metadata_yaml(
            &["split_0.db3", "split_1.db3"],
            &[
                ("/a", "std_msgs/msg/String", counts),
                ("/b", "std_msgs/msg/String", 400 - counts),
            ],
            T0,
            want.last().unwrap().0,
        ),
    )
    .unwrap();
    let rec = Recording::open(&bag).expect("split bag opens");
    let mut got = Vec::new();
    dump_recording(&rec, &DumpFilter::default(), |l| {
        got.push((
            l["time_ns"].as_u64().unwrap(),
            l["file"].as_u64().expect("file field") as usize,
            l["data"]["data"].as_str().unwrap().to_string(),
        ));
        true
    })
    .unwrap();
    assert_eq!(got, want);
    let info = bag2dataset::commands::info::bag_info(&bag).expect("info");
    assert_eq!(info.messages, 400);
    assert_eq!(info.counted_from, Some("metadata.yaml"));
    let a = info.topics.iter().find(|t| t.topic == "/a").unwrap();
    assert_eq!(a.messages, counts);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary converts a shuffled `.db3` (JointState, rows out of time order) and the dataset
/// holds its states in time order, the same as from the same rows inserted in time order.
#[test]
fn a_shuffled_db3_converts_like_the_same_rows_in_time_order() {
    let dir = tmp("convert");
    let n = 400u64;
    let mut digests = Vec::new();
    for (name, perm) in [
        ("ordered.db3", (0..n).collect::<Vec<_>>()),
        ("shuffled.db3", shuffled(n)),
    ] {
        let path = dir.join(name);
        let db = Db3::create(&path, true);
        db.topic(1, "/arm/joint_states", "sensor_msgs/msg/JointState");
        let tx = db.db.unchecked_transaction().unwrap();
        for (row, &k) in perm.iter().enumerate() {
            let t = T0 + k * 10_000_000;
            let pos = [k as f64, k as f64 * 2.0];
            db.message(row as i64 + 1, 1, t, &db3::joint_state(t, &pos));
        }
        tx.commit().unwrap();
        drop(db);
        let out = dir.join(format!("{name}.out"));
        let o = Command::new(BIN)
            .args(["convert", "--quiet", "--max-memory", "256MiB"])
            .arg(&path)
            .arg("-o")
            .arg(&out)
            .output()
            .expect("run binary");
        assert!(
            o.status.success(),
            "convert {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut files = Vec::new();
        collect(&out.join("data"), &mut files);
        files.sort();
        assert!(!files.is_empty());
        digests.push(
            files
                .iter()
                .map(|f| std::fs::read(f).unwrap())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(digests[0], digests[1], "same data from shuffled rows");
    let _ = std::fs::remove_dir_all(&dir);
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("data dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
