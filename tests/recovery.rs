//! Recovery of bags without a usable index: bags built in memory by the project's writer
//! (unindexed, interrupted mid-chunk, cut at many points, with lying chunk sizes) for each
//! compression, and the damaged bags of ../shared/testdata/generated repaired by `reindex`.

mod common;

use common::testdata;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bag2dataset::bag::chunk_reader::{messages, read_chunk};
use bag2dataset::bag::record::Record;
use bag2dataset::bag::writer::{
    BagWriter, BagWriterOptions, Compression, ConnectionInfo, ConnectionRecords, Payload,
};
use bag2dataset::bag::{BagFile, BagIndex, RecoveryNote, RecoveryReason};
use bag2dataset::commands::dump::{DumpFilter, dump_bag_with};
use bag2dataset::commands::reindex::reindex_bag;
use bag2dataset::error::Result;

/// The largest single allocation any test of this binary made: lying sizes must not show up here.
static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// Records the largest allocation, then defers to the system allocator.
struct Largest;

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// No test here needs a buffer anywhere near this: 32 MiB.
const NO_HUGE_ALLOCATION: usize = 32 << 20;

/// One message: connection, record time, payload.
type Msg = (u32, u64, Vec<u8>);

const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Bz2, Compression::Lz4];

/// A fresh scratch directory, in memory (/dev/shm) when there is one (the cut test writes
/// thousands of small files); removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(name: &str) -> Scratch {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("b2d-recovery-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    Scratch(d)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Finish {
    Indexed,
    Unindexed,
    Interrupted,
}

/// A bag of 3 connections (one latched with a callerid, one of empty messages) and 150
/// messages in small chunks, some out of time order; returns its bytes and its messages in
/// file order.
fn build(compression: Compression, finish: Finish) -> (Vec<u8>, Vec<Msg>) {
    build_with(compression, finish, ConnectionRecords::FirstUse)
}

/// [`build`] with connection records where `records` says.
fn build_with(
    compression: Compression,
    finish: Finish,
    records: ConnectionRecords,
) -> (Vec<u8>, Vec<Msg>) {
    let opts = BagWriterOptions {
        chunk_threshold: 1500,
        connection_records: records,
        ..BagWriterOptions::with_compression(compression)
    };
    let mut w = BagWriter::new(std::io::Cursor::new(Vec::new()), opts).expect("writer");
    let s = w
        .add_connection_info(
            &ConnectionInfo::new(
                "/chatter",
                "std_msgs/String",
                "992ce8a1687cec8c8bd883ec73ca41d1",
                "string data\n",
            )
            .callerid("/talker")
            .latching(true),
        )
        .expect("conn");
    let e = w
        .add_connection(
            "/tick",
            "std_msgs/Empty",
            "d41d8cd98f00b204e9800998ecf8427e",
            "",
        )
        .expect("conn");
    let n = w
        .add_connection(
            "/count",
            "std_msgs/UInt32",
            "304a39449588c7f8ce2df6e8001c5fce",
            "uint32 data\n",
        )
        .expect("conn");
    let mut msgs = Vec::new();
    for i in 0..150u64 {
        let t = 1_700_000_000_000_000_000 + i * 10_000_000 - (i % 7 == 3) as u64 * 25_000_000;
        let (conn, payload) = match i % 3 {
            0 => (
                s,
                Payload::new()
                    .string(&"x".repeat((i * 5) as usize))
                    .clone()
                    .into_vec(),
            ),
            1 => (e, Vec::new()),
            _ => (n, Payload::new().u32(i as u32).clone().into_vec()),
        };
        w.write(conn, t, &payload).expect("write");
        msgs.push((conn, t, payload));
    }
    let out = match finish {
        Finish::Indexed => w.finish(),
        Finish::Unindexed => w.finish_unindexed(),
        Finish::Interrupted => w.finish_interrupted(),
    }
    .expect("finish");
    (out.into_inner(), msgs)
}

/// Every message the index (or the recovery) lists, in file order, read the way `dump` reads
/// them; also checks that the chunk walker the converter uses sees the same messages.
fn read_all(path: &Path) -> Result<(Vec<Msg>, Option<RecoveryNote>)> {
    let bag = BagFile::open(path)?;
    let (index, note) = BagIndex::open(&bag)?;
    let conns: Vec<u32> = index.connections.iter().map(|c| c.id).collect();
    let entries = index.entries_in_file_order(&bag, &conns)?;
    let mut out = Vec::new();
    let mut chunks = HashMap::new();
    for e in &entries {
        let data = chunks
            .entry(e.chunk)
            .or_insert_with(|| read_chunk(&bag, &index.chunks[e.chunk as usize]));
        let data = data.as_ref().map_err(|err| {
            bag2dataset::error::Error::Config(format!("chunk {}: {err}", e.chunk))
        })?;
        let rec = Record::parse(data.bytes(), e.offset as usize).expect("entry points at a record");
        out.push((e.conn, e.time_ns, rec.data.to_vec()));
    }
    for (i, chunk) in index.chunks.iter().enumerate() {
        let data = read_chunk(&bag, chunk)?;
        let walked: Vec<_> = messages(data.bytes())
            .map(|m| m.expect("recovered chunks hold complete records only"))
            .collect();
        assert_eq!(walked.len() as u64, chunk.message_count(), "chunk {i}");
        assert!(
            walked
                .iter()
                .all(|m| m.time_ns >= chunk.start_ns && m.time_ns <= chunk.end_ns)
        );
    }
    Ok((out, note))
}

/// The bytes of a message data record as the writer encodes it (header fields sorted by name).
fn record_bytes(m: &Msg) -> Vec<u8> {
    let mut header = Vec::new();
    let mut field = |name: &str, value: &[u8]| {
        header.extend_from_slice(&((name.len() + 1 + value.len()) as u32).to_le_bytes());
        header.extend_from_slice(name.as_bytes());
        header.push(b'=');
        header.extend_from_slice(value);
    };
    field("conn", &m.0.to_le_bytes());
    field("op", &[2]);
    let mut t = ((m.1 / 1_000_000_000) as u32).to_le_bytes().to_vec();
    t.extend_from_slice(&((m.1 % 1_000_000_000) as u32).to_le_bytes());
    field("time", &t);
    let mut r = (header.len() as u32).to_le_bytes().to_vec();
    r.extend_from_slice(&header);
    r.extend_from_slice(&(m.2.len() as u32).to_le_bytes());
    r.extend_from_slice(&m.2);
    r
}

/// Where each message record of an uncompressed bag ends in the file (found by searching for
/// its bytes, independently of the reader).
fn record_ends(bytes: &[u8], msgs: &[Msg]) -> Vec<usize> {
    let mut at = 0;
    msgs.iter()
        .map(|m| {
            let r = record_bytes(m);
            let found = bytes[at..]
                .windows(r.len())
                .position(|w| w == r.as_slice())
                .expect("record present in the bag")
                + at;
            at = found + r.len();
            at
        })
        .collect()
}

const DATA_START: usize = 4117;

#[test]
fn unindexed_and_interrupted_bags_recover_every_message_in_file_order() {
    let dir = tmpdir("whole");
    for c in COMPRESSIONS {
        for finish in [Finish::Indexed, Finish::Unindexed, Finish::Interrupted] {
            let (bytes, msgs) = build(c, finish);
            let path = dir.join(format!("{c:?}-{finish:?}.bag"));
            std::fs::write(&path, &bytes).unwrap();
            let (got, note) = read_all(&path).unwrap();
            assert_eq!(got, msgs, "{c:?} {finish:?}");
            match finish {
                Finish::Indexed => assert!(note.is_none()),
                _ => {
                    let note = note.expect("a recovery note");
                    assert_eq!(note.reason, RecoveryReason::NotClosed);
                    assert_eq!(note.messages, 150);
                    assert!(note.warnings.is_empty(), "{c:?} {finish:?}: {note}");
                    let text = note.to_string();
                    assert!(
                        text.starts_with(
                            "no index (recording was not closed); recovered 150 messages in"
                        ),
                        "{text}"
                    );
                }
            }
            // The recovered connections keep their callerid and latching.
            let bag = BagFile::open(&path).unwrap();
            let (index, _) = BagIndex::open(&bag).unwrap();
            let chatter = index.connection(0).unwrap();
            assert_eq!(chatter.callerid.as_deref(), Some("/talker"));
            assert!(chatter.latching);
            assert_eq!(index.message_count(), 150);
            let times = index.topic_times(&bag, &[0, 1, 2]).unwrap();
            assert_eq!(times.len(), 150);
            assert!(times.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}

#[test]
fn truncated_copies_recover_exactly_their_complete_records() {
    let dir = tmpdir("cuts");
    let mut cuts_tried = 0;
    for c in COMPRESSIONS {
        for finish in [Finish::Indexed, Finish::Unindexed, Finish::Interrupted] {
            let (bytes, msgs) = build(c, finish);
            let ends = (c == Compression::None).then(|| record_ends(&bytes, &msgs));
            let path = dir.join(format!("{c:?}-{finish:?}.bag"));
            let mut last = 0;
            let mut points: Vec<usize> = (DATA_START..bytes.len()).step_by(11).collect();
            points.extend([DATA_START + 1, bytes.len() - 1, bytes.len()]);
            points.sort_unstable();
            for cut in points {
                std::fs::write(&path, &bytes[..cut]).unwrap();
                let (got, _) = read_all(&path)
                    .unwrap_or_else(|e| panic!("{c:?} {finish:?} cut at {cut}: {e}"));
                cuts_tried += 1;
                assert_eq!(
                    got[..],
                    msgs[..got.len()],
                    "{c:?} {finish:?} cut at {cut}: not a prefix"
                );
                match &ends {
                    // Uncompressed: exactly the messages whose record is complete.
                    Some(ends) => {
                        let complete = ends.iter().filter(|&&e| e <= cut).count();
                        assert_eq!(got.len(), complete, "{finish:?} cut at {cut}");
                    }
                    // Compressed: a cut stream yields what it decodes to; never less than before.
                    None => assert!(got.len() >= last, "{c:?} {finish:?} cut at {cut}"),
                }
                last = got.len();
            }
            assert_eq!(last, msgs.len(), "{c:?} {finish:?} whole file");
        }
    }
    eprintln!("{cuts_tried} cut points recovered without error");
}

/// Offset of the `size` value in the chunk record header at `pos`.
fn size_field(bytes: &[u8], pos: usize) -> usize {
    let header_len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    let header = &bytes[pos + 4..pos + 4 + header_len];
    pos + 4 + header.windows(5).position(|w| w == b"size=").unwrap() + 5
}

#[test]
fn a_lying_chunk_size_is_not_allocated() {
    let dir = tmpdir("lying");
    for c in [Compression::Bz2, Compression::Lz4] {
        // Every chunk carries its connection records, so chunks after a skipped one decode.
        let (mut bytes, msgs) = build_with(c, Finish::Unindexed, ConnectionRecords::EveryChunk);
        let at = size_field(&bytes, DATA_START);
        let honest = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let path = dir.join(format!("{c:?}.bag"));

        // Beyond any limit: the chunk is skipped with a warning naming its offset.
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (got, note) = read_all(&path).unwrap();
        let note = note.unwrap().to_string();
        assert!(note.contains("chunk at offset 4117 skipped"), "{note}");
        assert!(!got.is_empty() && got.len() < msgs.len());
        assert_eq!(got[..], msgs[msgs.len() - got.len()..]);

        // Large but under the limit, far beyond the compression ratio believed: the buffer
        // grows with the real output; the chunk's records are all kept.
        bytes[at..at + 4].copy_from_slice(&(300u32 << 20).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (got, note) = read_all(&path).unwrap();
        assert_eq!(got, msgs);
        let note = note.unwrap().to_string();
        assert!(note.contains("chunk at offset 4117"), "{note}");
        let bag = BagFile::open(&path).unwrap();
        let (index, _) = BagIndex::open(&bag).unwrap();
        assert_eq!(
            index.chunks[0].uncompressed_size, honest,
            "kept the real size"
        );

        assert!(LARGEST_ALLOCATION.load(Ordering::Relaxed) < NO_HUGE_ALLOCATION);

        // Smaller than the real output: the complete records that fit are kept.
        bytes[at..at + 4].copy_from_slice(&(honest / 2).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (got, _) = read_all(&path).unwrap();
        assert!(got.len() < msgs.len());
    }
}

#[test]
fn an_indexed_chunk_with_a_lying_size_is_a_clear_error_not_an_allocation() {
    let dir = tmpdir("lying-indexed");
    for c in [Compression::Bz2, Compression::Lz4] {
        let (mut bytes, _) = build(c, Finish::Indexed);
        let at = size_field(&bytes, DATA_START);
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let path = dir.join(format!("{c:?}.bag"));
        std::fs::write(&path, &bytes).unwrap();
        let e = dump_bag_with(&path, &DumpFilter::default(), |_| {}, |_| true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("offset 4117") && e.contains("declares size 4294967295"),
            "{c:?}: {e}"
        );
        assert!(LARGEST_ALLOCATION.load(Ordering::Relaxed) < NO_HUGE_ALLOCATION);
    }
}

#[test]
fn a_damaged_index_section_falls_back_to_a_scan() {
    let dir = tmpdir("damaged-index");
    let (mut bytes, msgs) = build(Compression::Lz4, Finish::Indexed);
    let bag_path = dir.join("ok.bag");
    std::fs::write(&bag_path, &bytes).unwrap();
    let index_pos = BagFile::open(&bag_path).unwrap().header().index_pos as usize;
    // Break the op of the first index record.
    let op = index_pos
        + 4
        + bytes[index_pos + 4..]
            .windows(3)
            .position(|w| w == b"op=")
            .unwrap()
        + 3;
    bytes[op] = 0x7f;
    let path = dir.join("damaged.bag");
    std::fs::write(&path, &bytes).unwrap();
    let (got, note) = read_all(&path).unwrap();
    assert_eq!(got, msgs);
    let note = note.unwrap();
    assert!(matches!(note.reason, RecoveryReason::Damaged(_)), "{note}");
    assert!(
        note.to_string().contains("the index is unreadable"),
        "{note}"
    );
}

#[test]
fn reindexed_copies_are_indexed_and_hold_the_same_messages() {
    let dir = tmpdir("reindex");
    for c in COMPRESSIONS {
        for finish in [Finish::Unindexed, Finish::Interrupted] {
            let (bytes, msgs) = build(c, finish);
            let src = dir.join(format!("{c:?}-{finish:?}.bag"));
            std::fs::write(&src, &bytes).unwrap();
            let fixed = dir.join(format!("{c:?}-{finish:?}.fixed.bag"));
            let mut noted = false;
            let summary = reindex_bag(&src, &fixed, None, |_| noted = true).unwrap();
            assert!(noted);
            assert_eq!(summary.messages, 150);
            assert_eq!(summary.compression, c);
            let bag = BagFile::open(&fixed).unwrap();
            BagIndex::read(&bag).expect("the copy has an index");
            let (got, note) = read_all(&fixed).unwrap();
            assert!(note.is_none());
            assert_eq!(got, msgs);
            let c2 = BagIndex::read(&bag).unwrap();
            let chatter = c2.connection(0).unwrap();
            assert_eq!(chatter.callerid.as_deref(), Some("/talker"));
            assert!(chatter.latching);
        }
    }
    // Never over its own source.
    let (bytes, _) = build(Compression::None, Finish::Unindexed);
    let src = dir.join("self.bag");
    std::fs::write(&src, &bytes).unwrap();
    assert!(reindex_bag(&src, &src, None, |_| {}).is_err());
}

/// Every damaged bag of ../shared/testdata/generated, repaired by `reindex` in each
/// compression, dumps to its golden messages (in time order, since the copy is indexed).
#[test]
fn reindexed_damaged_testdata_bags_equal_their_goldens() {
    let Some(data) = testdata() else { return };
    let dir = tmpdir("goldens");
    let mut bags: Vec<PathBuf> = std::fs::read_dir(data.join("generated"))
        .expect("generated dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let meta = std::fs::read_to_string(format!("{}.golden.meta.json", p.display()));
            let is_bag = p.extension().is_some_and(|e| e == "bag" || e == "active");
            is_bag && meta.is_ok_and(|m| m.contains("\"order\": \"file\""))
        })
        .collect();
    bags.sort();
    assert_eq!(bags.len(), 4, "{bags:?}");
    let mut total = 0;
    for bag in &bags {
        let golden = std::fs::read_to_string(format!("{}.golden.jsonl", bag.display())).unwrap();
        let mut want: Vec<serde_json::Value> = golden
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // An indexed bag dumps by time, ties by connection; the sort is stable (file order).
        want.sort_by_key(|w| (w["time_ns"].as_u64(), w["conn"].as_u64()));
        for c in COMPRESSIONS {
            let fixed = dir.join(format!(
                "{}.{c:?}.bag",
                bag.file_name().unwrap().to_string_lossy()
            ));
            reindex_bag(bag, &fixed, Some(c), |_| {}).unwrap();
            let mut got = Vec::new();
            let mut note = None;
            dump_bag_with(
                &fixed,
                &DumpFilter::default(),
                |n| note = Some(n.clone()),
                |l| {
                    got.push(l);
                    true
                },
            )
            .unwrap();
            assert!(note.is_none(), "{}: the copy is indexed", fixed.display());
            assert_eq!(got.len(), want.len(), "{}", fixed.display());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{} message {i}", fixed.display());
            }
            total += got.len();
        }
    }
    assert_eq!(total, 3 * 5_238);
}

/// Points every index-data record of `bytes` at a connection that does not exist (the chunks
/// stay intact): the chunk infos then count messages the index data does not list.
fn unlist_index_data(bytes: &mut [u8]) -> usize {
    let mut hits = 0;
    let op = b"\x04\x00\x00\x00op=\x04";
    let mut at = 0;
    while let Some(p) = bytes[at..].windows(op.len()).position(|w| w == op) {
        let p = at + p;
        let from = p.saturating_sub(48);
        if let Some(c) = bytes[from..p].windows(5).rposition(|w| w == b"conn=") {
            let v = from + c + 5;
            bytes[v..v + 4].copy_from_slice(&999u32.to_le_bytes());
            hits += 1;
        }
        at = p + op.len();
    }
    hits
}

#[test]
fn index_data_that_contradicts_the_chunk_infos_falls_back_to_a_scan() {
    let dir = tmpdir("mismatch");
    let (mut bytes, msgs) = build(Compression::None, Finish::Indexed);
    assert!(unlist_index_data(&mut bytes) > 0);
    let path = dir.join("unlisted.bag");
    std::fs::write(&path, &bytes).unwrap();
    // The plain index lists nothing for these chunks; the verified one falls back.
    let bag = BagFile::open(&path).unwrap();
    let (index, note) = BagIndex::open_verified(&bag).unwrap();
    let note = note.expect("a recovery note");
    assert!(
        matches!(&note.reason, RecoveryReason::Damaged(w) if w.contains("index data")),
        "{note}"
    );
    assert_eq!(index.message_count(), msgs.len() as u64);
    // dump: every message, one warning, exit 0.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bag2dataset"))
        .args(["dump", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        msgs.len()
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    // info: the counts of every message.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bag2dataset"))
        .args(["info", path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"], msgs.len() as u64, "{v:#}");
}

#[test]
fn convert_of_a_bag_with_unlisted_index_data_keeps_every_frame() {
    let dir = tmpdir("mismatch-convert");
    let good = dir.join("good.bag");
    common::SyntheticBag {
        compression: Compression::None,
        chunk_threshold: 32 << 10,
        ..common::SyntheticBag::default()
    }
    .write(&good);
    let mut bytes = std::fs::read(&good).unwrap();
    assert!(unlist_index_data(&mut bytes) > 0);
    let bad = dir.join("bad.bag");
    std::fs::write(&bad, &bytes).unwrap();
    let cfg = bag2dataset::convert::config::ConvertConfig::from_toml(
        "fps = 10\ntimeline = \"/cam/image/compressed\"\n[[features]]\nname = \"observation.images.cam\"\ntopic = \"/cam/image/compressed\"\n[[features]]\nname = \"observation.state\"\ntopic = \"/arm/joint_states\"\nfield = \"position\"\n",
        "test",
    )
    .unwrap();
    let convert = |bag: &Path, out: &str| {
        bag2dataset::convert::run::run(&bag2dataset::convert::run::RunOptions {
            inputs: vec![bag.to_path_buf()],
            output: dir.join(out),
            config: Some(cfg.clone()),
            ceiling: 256 << 20,
            ..Default::default()
        })
        .unwrap()
    };
    let (a, b) = (convert(&good, "good"), convert(&bad, "bad"));
    assert_eq!(b.bags[0].status, "recovered");
    assert!(a.frames > 0);
    assert_eq!(a.frames, b.frames);
}

/// The offsets of the top-level records of `bytes` from the first chunk to the index section,
/// with their op codes.
fn top_records(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let index_pos = index_pos_of(bytes);
    let mut at = DATA_START;
    let mut out = Vec::new();
    while at < index_pos {
        let rec = Record::parse(bytes, at).expect("a record");
        out.push((at, rec.end, rec.fields().op().expect("op")));
        at = rec.end;
    }
    out
}

/// Offset of the value of header field `name` in the record header at `at`.
fn field_value_at(bytes: &[u8], at: usize, name: &str) -> usize {
    let rec = Record::parse(bytes, at).expect("a record");
    let header_at = at + 4;
    let key = format!("{name}=");
    let p = rec
        .header
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .expect("field present");
    header_at + p + key.len()
}

fn index_pos_of(bytes: &[u8]) -> usize {
    let v = field_value_at(bytes, 13, "index_pos");
    u64::from_le_bytes(bytes[v..v + 8].try_into().unwrap()) as usize
}

/// The bag without its index-data records (the chunks and the index section intact, every
/// offset moved to match): a writer that left them out.
fn strip_index_data(bytes: &[u8]) -> Vec<u8> {
    let index_pos = index_pos_of(bytes);
    let mut out = bytes[..DATA_START].to_vec();
    let mut moved = HashMap::new();
    for (at, end, op) in top_records(bytes) {
        if op == 0x04 {
            continue;
        }
        moved.insert(at as u64, out.len() as u64);
        out.extend_from_slice(&bytes[at..end]);
    }
    let new_index_pos = out.len();
    let mut at = index_pos;
    while at < bytes.len() {
        let rec = Record::parse(bytes, at).expect("index record");
        let start = out.len();
        out.extend_from_slice(&bytes[at..rec.end]);
        if rec.fields().op().unwrap() == 0x06 {
            let v = field_value_at(bytes, at, "chunk_pos") - at + start;
            let old = u64::from_le_bytes(out[v..v + 8].try_into().unwrap());
            out[v..v + 8].copy_from_slice(&moved[&old].to_le_bytes());
        }
        at = rec.end;
    }
    let v = field_value_at(&out, 13, "index_pos");
    out[v..v + 8].copy_from_slice(&(new_index_pos as u64).to_le_bytes());
    out
}

/// Makes the index-data records at `which` (positions among them) unreadable: their `count`
/// no longer matches the entries they hold. Returns how many were spoilt.
fn spoil_index_data(bytes: &mut [u8], which: impl Fn(usize, usize) -> bool) -> usize {
    let records: Vec<usize> = top_records(bytes)
        .into_iter()
        .filter(|r| r.2 == 0x04)
        .map(|r| r.0)
        .collect();
    let mut n = 0;
    for (k, &at) in records.iter().enumerate() {
        if which(k, records.len()) {
            let v = field_value_at(bytes, at, "count");
            let count = u32::from_le_bytes(bytes[v..v + 4].try_into().unwrap());
            bytes[v..v + 4].copy_from_slice(&(count + 1).to_le_bytes());
            n += 1;
        }
    }
    n
}

/// Runs the binary; returns exit code, stdout and the `warning:` lines of stderr.
fn run_bin(args: &[&str]) -> (Option<i32>, String, Vec<String>) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bag2dataset"))
        .env("BAG2DATASET_SETTLE", "0")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let warnings = err
        .lines()
        .filter(|l| l.contains("warning"))
        .map(str::to_string)
        .collect();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        warnings,
    )
}

/// Bags whose index data is missing, unreadable or contradicts the chunk infos, throughout
/// or in one chunk only, while every chunk is intact: `info` counts every message from the
/// chunk infos alone (it reads no index data; `info --chunks` reads them and falls back to a
/// scan), and `info --chunks`, `dump` and `convert` recover every message, each with exactly
/// one warning.
#[test]
fn damaged_index_data_loses_no_message_and_warns_once() {
    let dir = tmpdir("damaged-index-data");
    let good = dir.join("good.bag");
    common::SyntheticBag {
        compression: Compression::Lz4,
        chunk_threshold: 16 << 10,
        seconds: 3,
        ..common::SyntheticBag::default()
    }
    .write(&good);
    let bytes = std::fs::read(&good).unwrap();
    let chunks = top_records(&bytes).iter().filter(|r| r.2 == 0x05).count();
    assert!(chunks >= 10, "{chunks} chunks");
    let mut variants: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    variants.push(("missing", strip_index_data(&bytes), true));
    let mut b = bytes.clone();
    assert!(spoil_index_data(&mut b, |_, _| true) > 0);
    variants.push(("unreadable", b, true));
    let mut b = bytes.clone();
    assert!(unlist_index_data(&mut b) > 0);
    variants.push(("unlisted", b, true));
    // One chunk in the middle: `open` does not see it, the converter finds it in its pass.
    let mut b = bytes.clone();
    assert_eq!(spoil_index_data(&mut b, |k, n| k == n / 2), 1);
    variants.push(("one chunk", b, false));

    let cfg = dir.join("conv.toml");
    std::fs::write(
        &cfg,
        "fps = 10\ntimeline = \"/cam/image/compressed\"\n[[features]]\nname = \"observation.images.cam\"\ntopic = \"/cam/image/compressed\"\n[[features]]\nname = \"observation.state\"\ntopic = \"/arm/joint_states\"\nfield = \"position\"\n",
    )
    .unwrap();
    // Without --json, which keeps stderr quiet; frames from the dataset's info.json.
    let convert = |bag: &Path, out: &str| {
        let out = dir.join(out);
        let (code, _, warnings) = run_bin(&[
            "convert",
            bag.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{}: {warnings:?}", bag.display());
        let info = std::fs::read_to_string(out.join("meta/info.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&info).unwrap();
        (v["total_frames"].clone(), warnings)
    };
    let (want, good_warnings) = convert(&good, "good");
    assert!(want.as_u64().unwrap() > 0);
    assert!(good_warnings.is_empty(), "{good_warnings:?}");
    let (_, stdout, w) = run_bin(&["info", "--json", good.to_str().unwrap()]);
    assert!(w.is_empty());
    let messages = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["messages"]
        .as_u64()
        .unwrap();
    let (_, dumped, _) = run_bin(&["dump", good.to_str().unwrap()]);
    assert_eq!(dumped.lines().count() as u64, messages);

    for (name, damaged, at_open) in variants {
        let path = dir.join(format!("{}.bag", name.replace(' ', "-")));
        std::fs::write(&path, &damaged).unwrap();
        let p = path.to_str().unwrap();
        // info: the index section alone, which is intact.
        let (code, stdout, warnings) = run_bin(&["info", "--json", p]);
        assert_eq!(code, Some(0), "{name}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["messages"], messages, "{name}");
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        // info --chunks reads the index data: a scan, one warning.
        let (code, stdout, warnings) = run_bin(&["info", "--json", "--chunks", p]);
        assert_eq!(code, Some(0), "{name}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["messages"], messages, "{name}");
        assert!(v["recovered"].is_string(), "{name}: {v:#}");
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        // dump: every message, one warning.
        let (code, stdout, warnings) = run_bin(&["dump", p]);
        assert_eq!(code, Some(0), "{name}");
        assert_eq!(stdout.lines().count() as u64, messages, "{name}");
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        // convert: the same frames as from the intact bag, one warning.
        let (got, warnings) = convert(&path, &format!("out-{}", name.replace(' ', "-")));
        assert_eq!(got, want, "{name}");
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        // Found when the bag is opened: read by a recovery scan. Found in the pass: the
        // chunk's messages come from the chunk.
        let scanned = warnings[0].contains("by scanning");
        assert!(
            scanned && warnings[0].contains("index"),
            "{name}: {warnings:?}"
        );
        assert_eq!(
            warnings[0].contains("recovered"),
            at_open,
            "{name}: {warnings:?}"
        );
    }
}
