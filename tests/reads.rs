//! The read pattern of a conversion, from the bag reader's read trace (`bag::file::trace`):
//! a convert reads the bag's chunks front to back once, each chunk record with its index data
//! in one read, with no scattered pre-pass. What is read besides, per open of the bag (a run
//! opens each bag to measure it, once more for the run-level facts of the first bag, and once
//! to convert it): the bag header, the index section (one read), and the header and index
//! data of a few edge chunks (the first and last chunk in the file, the first and last chunk
//! of the timeline topic); the plan's shape probe reads the first chunk(s) holding each
//! feature's topic through the map. That is a bounded number of reads, however many chunks
//! the bag has (an unindexed bag is read by one scan, kept for its conversion). Only a
//! compressed bag adds one sweep of its chunk headers, once per run (its
//! decompressed sizes are written nowhere else, and the memory plan needs the largest).
//! (`manifest::fingerprint` reads the file's edges and its index section with plain reads,
//! outside this trace; see the strace cross-check in docs/benchmarks.md.)

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bag2dataset::bag::file::{ReadKind, TracedRead, trace};
use bag2dataset::bag::index::CHUNK_HEADER_READ;
use bag2dataset::bag::writer::Compression;
use bag2dataset::bag::{BagFile, BagIndex};

/// The trace is process-wide: one test at a time uses it.
static TRACE_USER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TRACE_USER.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("b2d-reads-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// What each read of a bag was, as far as its index tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    BagHeader,
    IndexSection,
    ChunkHeader(usize),
    /// The chunk's stored data, by a positioned read or through the map.
    Chunk(usize, ReadKind),
    IndexData(usize),
    /// The whole chunk record and the index data after it, in one positioned read.
    Whole(usize),
}

/// Names every read of `path` in `reads`; a read of anything else fails the test.
fn classify(index: &BagIndex, path: &Path, reads: &[TracedRead]) -> Vec<Region> {
    let mut order: Vec<usize> = (0..index.chunks.len()).collect();
    order.sort_by_key(|&i| index.chunks[i].pos);
    reads
        .iter()
        .filter(|r| r.path == path)
        .map(|r| {
            assert_ne!(r.kind, ReadKind::Scan, "an indexed bag was scanned: {r:?}");
            let c = |i: usize| &index.chunks[i];
            if r.offset == 0 && r.kind == ReadKind::Mapped && r.len == index.header.data_start {
                Region::BagHeader
            } else if r.offset == index.header.index_pos && r.offset + r.len == index.file_len {
                Region::IndexSection
            } else if let Some(i) = order.iter().copied().find(|&i| {
                r.kind == ReadKind::Positioned
                    && c(i).pos == r.offset
                    && index.span_end(i) == Some(r.offset + r.len)
            }) {
                Region::Whole(i)
            } else if let Some(i) = order
                .iter()
                .copied()
                .find(|&i| c(i).pos == r.offset && r.len <= CHUNK_HEADER_READ as u64)
            {
                Region::ChunkHeader(i)
            } else if let Some(i) = order
                .iter()
                .copied()
                .find(|&i| c(i).data_offset == r.offset && c(i).data_len as u64 == r.len)
            {
                Region::Chunk(i, r.kind)
            } else if let Some(i) = order.iter().copied().find(|&i| c(i).end() == r.offset) {
                Region::IndexData(i)
            } else {
                panic!("a read of no known region: {r:?}")
            }
        })
        .collect()
}

/// What a read pattern is made of, checked against "one forward pass".
#[derive(Debug)]
struct Pattern {
    opens: usize,
    /// The chunks read by positioned reads (whole or their data alone), in the order read.
    pass: Vec<usize>,
    /// Chunks read whole (record and index data in one read).
    whole: usize,
    /// Chunk headers read on their own.
    headers: usize,
    /// Reads other than the bag header, the index section and the pass.
    outside: usize,
    /// Chunks whose index data was read right after the chunk itself, in the pass.
    index_data_in_pass: usize,
    /// Chunks whose index data was read anywhere else.
    index_data_elsewhere: BTreeSet<usize>,
    /// Reads of index data anywhere else (a chunk's read twice counts twice).
    index_data_reads_elsewhere: usize,
    /// Chunks read through the map (the shape probe).
    mapped: BTreeSet<usize>,
}

fn pattern(index: &BagIndex, regions: &[Region]) -> Pattern {
    let mut p = Pattern {
        opens: 0,
        pass: Vec::new(),
        whole: 0,
        headers: 0,
        outside: 0,
        index_data_in_pass: 0,
        index_data_elsewhere: BTreeSet::new(),
        index_data_reads_elsewhere: 0,
        mapped: BTreeSet::new(),
    };
    for (k, r) in regions.iter().enumerate() {
        match *r {
            Region::IndexSection => p.opens += 1,
            Region::ChunkHeader(_) => {
                p.headers += 1;
                p.outside += 1;
            }
            Region::Whole(i) => {
                p.pass.push(i);
                p.whole += 1;
                p.index_data_in_pass += 1;
            }
            Region::Chunk(i, ReadKind::Positioned) => p.pass.push(i),
            Region::Chunk(_, ReadKind::Scan) => unreachable!("classify names no scan"),
            Region::Chunk(i, ReadKind::Mapped) => {
                p.mapped.insert(i);
                p.outside += 1;
            }
            Region::IndexData(i) => {
                if k > 0 && regions[k - 1] == Region::Chunk(i, ReadKind::Positioned) {
                    p.index_data_in_pass += 1;
                } else {
                    p.index_data_elsewhere.insert(i);
                    p.index_data_reads_elsewhere += 1;
                    p.outside += 1;
                }
            }
            Region::BagHeader => {}
        }
    }
    let _ = index;
    p
}

/// Whether `pass` visits chunks strictly forward in the file, each once.
fn forward(index: &BagIndex, pass: &[usize]) -> bool {
    pass.windows(2)
        .all(|w| index.chunks[w[0]].pos < index.chunks[w[1]].pos)
}

fn open_index(path: &Path) -> BagIndex {
    let bag = BagFile::open(path).expect("bag opens");
    BagIndex::read(&bag).expect("index reads")
}

#[test]
fn a_convert_reads_the_chunks_front_to_back_once() {
    let _serial = serial();
    let dir = tmp("convert");
    for compression in [Compression::None, Compression::Lz4] {
        let bag = dir.join(format!("{}.bag", compression.name()));
        common::SyntheticBag {
            seconds: 8,
            compression,
            chunk_threshold: 8 << 10,
            ..common::SyntheticBag::default()
        }
        .write(&bag);
        let index = open_index(&bag);
        let n = index.chunks.len();
        assert!(
            n >= 40,
            "{n} chunks: too few to tell a pass from scattered reads"
        );

        trace::start();
        let report = bag2dataset::convert::run::run(&bag2dataset::convert::run::RunOptions {
            inputs: vec![bag.clone()],
            output: dir.join(format!("ds-{}", compression.name())),
            ceiling: 256 << 20,
            ..Default::default()
        });
        let reads = trace::stop();
        let report = report.expect("convert");
        assert!(report.frames > 0);

        let regions = classify(&index, &bag, &reads);
        let p = pattern(&index, &regions);
        eprintln!(
            "{compression:?}: {n} chunks, {} reads; {} opens; pass {} chunks ({} whole); \
             {} reads outside the pass ({} chunk headers, index data of {:?}, probe (mapped) {:?})",
            regions.len(),
            p.opens,
            p.pass.len(),
            p.whole,
            p.outside,
            p.headers,
            p.index_data_elsewhere,
            p.mapped
        );
        // One pass: every chunk once, strictly forward, each read whole with its index data.
        let mut all: Vec<usize> = (0..n).collect();
        all.sort_by_key(|&i| index.chunks[i].pos);
        assert_eq!(
            p.pass, all,
            "{compression:?}: the pass is not every chunk in file order"
        );
        assert!(forward(&index, &p.pass));
        assert_eq!(p.whole, n, "{compression:?}: each chunk in one read");
        assert_eq!(
            p.index_data_in_pass, n,
            "{compression:?}: index data taken in the pass"
        );
        // Besides: per open, the index section and a few edge chunks, however many chunks
        // the bag has; a compressed bag's headers once per run, for the memory plan.
        assert_eq!(
            p.opens, 1,
            "{compression:?}: a run of one bag opens it once"
        );
        let edges: BTreeSet<usize> = [all[0], all[n - 1]].into_iter().collect();
        assert!(
            p.index_data_elsewhere.len() <= 4,
            "{compression:?}: index data read outside the pass for chunks {:?}",
            p.index_data_elsewhere
        );
        assert!(edges.is_subset(&p.index_data_elsewhere), "{p:?}");
        // The open keeps what it read of the edges' index data for the timeline's span.
        assert_eq!(
            p.index_data_reads_elsewhere,
            p.index_data_elsewhere.len(),
            "{compression:?}: index data read more than once outside the pass: {p:?}"
        );
        // The open reads the headers of the first and last chunk; only a compressed bag's
        // other headers are swept (once per run, by the memory plan).
        let edge_headers = 2 * p.opens;
        let sweep = match compression {
            Compression::None => 0,
            _ => n - 2,
        };
        assert_eq!(
            p.headers,
            sweep + edge_headers,
            "{compression:?}: chunk headers read on their own"
        );
        // The rest: edge index data (the open's check, kept for the timeline's ends) and the
        // probe.
        assert!(
            p.outside <= p.headers + 4,
            "{compression:?}: {} reads outside the pass",
            p.outside
        );
        // The shape probe reads only the first chunks.
        assert!(
            p.mapped.iter().all(|i| all[..4].contains(i)),
            "{compression:?}: probe read chunks {:?}",
            p.mapped
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checks above can fail: `dump` verifies every chunk's index data before it reads any
/// chunk, a pre-pass the converter no longer makes, and the pattern shows it.
#[test]
fn the_pattern_check_sees_a_scattered_pre_pass() {
    let _serial = serial();
    let dir = tmp("dump");
    let bag = dir.join("b.bag");
    common::SyntheticBag {
        seconds: 3,
        compression: Compression::None,
        chunk_threshold: 16 << 10,
        ..common::SyntheticBag::default()
    }
    .write(&bag);
    let index = open_index(&bag);
    trace::start();
    let lines = bag2dataset::commands::dump::dump_bag(
        &bag,
        &bag2dataset::commands::dump::DumpFilter::default(),
        |_| true,
    );
    let reads = trace::stop();
    assert!(lines.expect("dump") > 0);
    let p = pattern(&index, &classify(&index, &bag, &reads));
    assert!(p.pass.is_empty(), "dump reads chunks through the map");
    assert_eq!(p.index_data_elsewhere.len(), index.chunks.len(), "{p:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `info` reads the bag header and the index section, then for each topic only the header and
/// index data of its edge chunks (its exact first and last times): a few reads per topic,
/// whatever the bag's size, and the same figures as `info --chunks`.
#[test]
fn info_reads_only_the_index_section() {
    let _serial = serial();
    let dir = tmp("info");
    let bag = dir.join("b.bag");
    common::SyntheticBag {
        seconds: 3,
        chunk_threshold: 16 << 10,
        ..common::SyntheticBag::default()
    }
    .write(&bag);
    let index = open_index(&bag);
    trace::start();
    let info = bag2dataset::commands::info::bag_info(&bag);
    let reads = trace::stop();
    let info = info.expect("info");
    assert_eq!(info.messages, index.message_count());
    assert!(info.compression.is_none() && info.uncompressed_bytes.is_none());
    let regions = classify(&index, &bag, &reads);
    assert_eq!(regions[..2], [Region::BagHeader, Region::IndexSection]);
    let mut edges = BTreeSet::new();
    for r in &regions[2..] {
        match r {
            Region::ChunkHeader(i) | Region::IndexData(i) => {
                edges.insert(*i);
            }
            other => panic!("info read {other:?}"),
        }
    }
    let topics = info.topics.len();
    assert!(
        edges.len() <= 2 * topics && edges.len() < index.chunks.len(),
        "info read the edges of {} of {} chunks for {topics} topics",
        edges.len(),
        index.chunks.len()
    );
    // --chunks reads every chunk header and every chunk's index data too.
    trace::start();
    let deep = bag2dataset::commands::info::bag_info_with(
        &bag,
        bag2dataset::commands::info::InfoDepth { chunks: true },
    );
    let reads = trace::stop();
    let deep = deep.expect("info --chunks");
    assert_eq!(deep.messages, info.messages);
    for (a, b) in info.topics.iter().zip(&deep.topics) {
        assert_eq!((&a.topic, a.messages), (&b.topic, b.messages));
        assert_eq!(a.frequency_hz, b.frequency_hz, "{}", a.topic);
    }
    assert_eq!(
        deep.compression
            .as_ref()
            .and_then(|c| c.get("lz4"))
            .copied(),
        Some(index.chunks.len())
    );
    let p = pattern(&index, &classify(&index, &bag, &reads));
    assert_eq!(p.index_data_elsewhere.len(), index.chunks.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A list of unindexed bags (recordings killed between chunks): each one is opened by a scan
/// of the whole file, and a run measures every bag before it converts any. The scans are kept
/// (within an eighth of the ceiling) from the measurement to the conversion, so each bag is
/// scanned once, in either episode order; and the scans kept show in the plan's baseline.
#[test]
fn a_list_scans_each_unindexed_bag_once() {
    let _serial = serial();
    let dir = tmp("unindexed-list");
    let bags: Vec<PathBuf> = (0..3u64)
        .map(|k| {
            let bag = dir.join(format!("r{k}.bag"));
            common::SyntheticBag {
                seconds: 2,
                start_s: 10 * (3 - k),
                seed: k,
                unindexed: true,
                ..common::SyntheticBag::default()
            }
            .write(&bag);
            bag
        })
        .collect();
    for order in [
        bag2dataset::convert::select::Order::Path,
        bag2dataset::convert::select::Order::StartTime,
    ] {
        trace::start();
        let report = bag2dataset::convert::run::run(&bag2dataset::convert::run::RunOptions {
            inputs: bags.clone(),
            output: dir.join(format!("ds-{order:?}")),
            ceiling: 256 << 20,
            order,
            ..Default::default()
        });
        let reads = trace::stop();
        let report = report.expect("convert");
        assert_eq!((report.episodes, report.recovered), (3, 3), "{order:?}");
        for bag in &bags {
            let scans = reads
                .iter()
                .filter(|r| &r.path == bag && r.kind == ReadKind::Scan)
                .count();
            assert_eq!(
                scans,
                1,
                "{order:?}: {} scanned {scans} times",
                bag.display()
            );
        }
        assert!(
            report.memory.baseline > report.memory.start_rss,
            "{order:?}: the kept scans are not in the plan's baseline: {:?}",
            report.memory
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The plan reads no chunk header beyond the edges when the first and last chunks are stored
/// uncompressed. A bag that changes compression in the middle (rosbag allows it) breaks that
/// rule: its conversion fails with an error naming the chunk and what to do, never a hang on a
/// budget that cannot grow or an unplanned allocation.
#[test]
fn a_compressed_chunk_between_uncompressed_edges_is_named() {
    use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Payload};
    use common::bags::{cameras_and_joints, compressed_image, joint_positions};
    let _serial = serial();
    let dir = tmp("mixed");
    let bag = dir.join("mixed.bag");
    let opts = BagWriterOptions {
        chunk_threshold: 8 << 10,
        ..BagWriterOptions::with_compression(Compression::None)
    };
    let mut w = BagWriter::create(&bag, opts).unwrap();
    let (cams, js) = cameras_and_joints(&mut w, &["/cam/image/compressed"], "/arm/joint_states");
    let pad = w
        .add_connection(
            "/pad",
            "std_msgs/String",
            "992ce8a1687cec8c8bd883ec73ca41d1",
            "string data\n",
        )
        .unwrap();
    let jpeg = common::jpeg_frame(0, 0);
    let names = ["a".to_string()];
    let t = |k: u64| common::START + k * 10_000_000;
    for k in 0..300u64 {
        if k == 150 {
            w.set_compression(Compression::Lz4).unwrap();
        }
        if k == 152 {
            w.set_compression(Compression::None).unwrap();
        }
        if k % 3 == 0 {
            let p = compressed_image(k as u32, t(k), &jpeg);
            w.write(cams[0], t(k), p.as_slice()).unwrap();
        } else {
            let p = joint_positions(k as u32, t(k), &names, &[k as f64]);
            w.write(js, t(k), p.as_slice()).unwrap();
        }
        if k == 150 {
            // An lz4 chunk holding a camera message and a megabyte of zeros: a few KiB stored.
            let mut p = Payload::new();
            p.bytes(&vec![0u8; 1 << 20]);
            w.write(pad, t(k), p.as_slice()).unwrap();
        }
    }
    w.finish().unwrap();

    let out = dir.join("ds");
    let err = bag2dataset::convert::run::run(&bag2dataset::convert::run::RunOptions {
        inputs: vec![bag.clone()],
        output: out.clone(),
        ceiling: 256 << 20,
        ..Default::default()
    })
    .expect_err("the lz4 chunk does not fit the plan")
    .to_string();
    assert!(
        err.contains("lz4-compressed") && err.contains("reindex --compression none"),
        "{err}"
    );
    assert!(
        !out.join("meta/info.json").exists(),
        "no dataset presented as complete"
    );
    // The remedy the error gives works: a copy in one compression converts, every tick.
    let copy = dir.join("copy.bag");
    bag2dataset::commands::reindex::reindex_bag(&bag, &copy, Some(Compression::None), |_| {})
        .expect("reindex");
    let report = bag2dataset::convert::run::run(&bag2dataset::convert::run::RunOptions {
        inputs: vec![copy],
        output: out,
        ceiling: 256 << 20,
        ..Default::default()
    })
    .expect("the copy converts");
    assert_eq!(report.total_frames, 100);
    let _ = std::fs::remove_dir_all(&dir);
}
