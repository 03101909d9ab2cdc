//! `bag2dataset info`: what a bag holds, from its index alone (no chunk is decompressed).
//!
//! For a ROS1 bag that is the index section at the end of the file, read in one go:
//! connections and chunk infos give counts per topic, and the chunk time ranges give each
//! topic's time range and frequency (bounded by the chunks holding it). Nothing else of the
//! file is read, so a cold 4 GB bag answers in milliseconds. `--chunks` also reads every
//! chunk record's header (compression breakdown, decompressed bytes) and the index data after
//! each chunk (exact first and last time per topic), checking them against the chunk infos.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::bag::{BagFile, BagIndex};
use crate::error::Result;
use crate::timefmt;

/// Per-topic summary.
#[derive(Debug, Serialize)]
pub struct TopicInfo {
    pub topic: String,
    msgtype: String,
    pub messages: u64,
    /// Messages per second between the topic's first and last record time (null below 2).
    pub frequency_hz: Option<f64>,
    connections: usize,
}

/// Everything `info` reports about one bag.
#[derive(Debug, Serialize)]
pub struct BagInfo {
    path: String,
    version: &'static str,
    size_bytes: u64,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    start: Option<String>,
    end: Option<String>,
    duration_s: f64,
    pub messages: u64,
    chunks: usize,
    /// Chunk count per compression (`none`, `bz2`, `lz4`); absent for a ROS1 bag unless
    /// `--chunks` asked for the chunk headers (or the bag was recovered by a scan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<BTreeMap<&'static str, usize>>,
    /// Decompressed bytes of all chunks; absent when `compression` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_bytes: Option<u64>,
    connections: usize,
    pub topics: Vec<TopicInfo>,
    /// Set when the bag had no usable index and was read by a recovery scan: what it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recovered: Option<String>,
    /// Set for an SQLite recording summarised without reading its messages: where the counts
    /// come from (`metadata.yaml` or `storage (aggregate SQL)`). `chunks` and `compression`
    /// then count storage files, and `uncompressed_bytes` is their size on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted_from: Option<&'static str>,
}

/// What `info` reads of a ROS1 bag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InfoDepth {
    /// Also every chunk header and the index data after every chunk (`info --chunks`).
    pub chunks: bool,
}

/// [`bag_info_with`] at the default depth: the index section alone.
pub fn bag_info(path: &Path) -> Result<BagInfo> {
    bag_info_with(path, InfoDepth::default())
}

/// Reads the index of `path` (or recovers it by a scan) and summarises it. ROS 2 recordings
/// (rosbag2 directory, `.mcap`, `.db3`) are described from their summary / topic tables.
pub fn bag_info_with(path: &Path, depth: InfoDepth) -> Result<BagInfo> {
    if crate::ros2::is_ros2_path(path) {
        return ros2_info(path);
    }
    let bag = BagFile::open(path)?;
    if !depth.chunks
        && let Ok(index) = BagIndex::read_section(&bag)
    {
        // Chunk infos: counts per connection; the edge chunks of each topic: its first and
        // last times.
        let counts = index.counts_by_connection();
        let mut edges = BTreeMap::new();
        let topics = index
            .topics()
            .into_iter()
            .map(|topic| {
                let conns = index.connections_of(topic);
                let n = conns.iter().filter_map(|c| counts.get(c)).sum();
                // Exact first and last times from the edge chunks' index data; the chunks'
                // time ranges if that index data cannot be read.
                let span = match index.topic_span_from_section(&bag, &conns, &mut edges) {
                    Ok(Some(span)) => span,
                    _ => chunk_span(&index, &conns),
                };
                topic_info(&index, topic, &conns, n, span)
            })
            .collect();
        return Ok(summary(path, &index, topics, false, None));
    }
    let (index, note) = BagIndex::open_verified(&bag)?;
    let all: Vec<u32> = index.connections.iter().map(|c| c.id).collect();
    // (count, first, last) per connection from the index-data records (or the scan).
    let mut seen: BTreeMap<u32, (u64, u64, u64)> = BTreeMap::new();
    index.visit_index_data(&bag, &all, |_, conn, t, _| {
        let e = seen.entry(conn).or_insert((0, u64::MAX, 0));
        e.0 += 1;
        e.1 = e.1.min(t);
        e.2 = e.2.max(t);
    })?;
    let mut topics = Vec::new();
    for topic in index.topics() {
        let conns = index.connections_of(topic);
        let (mut n, mut first, mut last) = (0u64, u64::MAX, 0u64);
        for c in &conns {
            if let Some(&(cn, cf, cl)) = seen.get(c) {
                n += cn;
                first = first.min(cf);
                last = last.max(cl);
            }
        }
        topics.push(topic_info(&index, topic, &conns, n, (first, last)));
    }
    let recovered = note.map(|n| n.to_string());
    Ok(summary(path, &index, topics, true, recovered))
}

/// The first start and last end of the chunks holding `conns`: the topic's time range as far
/// as the chunk infos tell (its messages lie inside it).
fn chunk_span(index: &BagIndex, conns: &[u32]) -> (u64, u64) {
    let (mut first, mut last) = (u64::MAX, 0u64);
    for ch in index.chunks.iter().filter(|ch| ch.holds_any(conns)) {
        first = first.min(ch.start_ns);
        last = last.max(ch.end_ns);
    }
    (first, last)
}

/// The bag-level lines of a ROS1 summary; `with_chunks` adds the compression breakdown and
/// the decompressed bytes (which need the chunk headers).
fn summary(
    path: &Path,
    index: &BagIndex,
    topics: Vec<TopicInfo>,
    with_chunks: bool,
    recovered: Option<String>,
) -> BagInfo {
    let range = index.time_range();
    BagInfo {
        path: path.display().to_string(),
        version: "2.0",
        size_bytes: index.file_len,
        start_ns: range.map(|r| r.0),
        end_ns: range.map(|r| r.1),
        start: range.map(|r| timefmt::utc(r.0)),
        end: range.map(|r| timefmt::utc(r.1)),
        duration_s: range.map(|(a, b)| (b - a) as f64 / 1e9).unwrap_or(0.0),
        messages: index.message_count(),
        chunks: index.chunks.len(),
        compression: with_chunks.then(|| chunks_by_compression(index)),
        uncompressed_bytes: with_chunks.then(|| {
            index
                .chunks
                .iter()
                .map(|c| c.uncompressed_size as u64)
                .sum()
        }),
        connections: index.connections.len(),
        topics,
        recovered,
        counted_from: None,
    }
}

/// One topic's line: its type (of its first connection), `n` messages between `first` and
/// `last` (ns), and the frequency they make.
fn topic_info(
    index: &BagIndex,
    topic: &str,
    conns: &[u32],
    n: u64,
    (first, last): (u64, u64),
) -> TopicInfo {
    let msgtype = conns
        .first()
        .and_then(|c| index.connection(*c))
        .map(|c| c.msgtype.clone())
        .unwrap_or_default();
    let frequency_hz =
        (n >= 2 && last > first).then(|| (n - 1) as f64 / ((last - first) as f64 / 1e9));
    TopicInfo {
        topic: topic.to_string(),
        msgtype,
        messages: n,
        frequency_hz,
        connections: conns.len(),
    }
}

/// Chunk (read unit) counts per compression.
fn chunks_by_compression(index: &BagIndex) -> BTreeMap<&'static str, usize> {
    let mut compression = BTreeMap::new();
    for c in &index.chunks {
        *compression.entry(c.compression.name()).or_insert(0) += 1;
    }
    compression
}

/// `info` of a ROS 2 recording: an SQLite one from [`crate::ros2::summary`] (no message
/// read); an MCAP one with counts per connection from its message indexes and a topic's
/// frequency from the time ranges of the chunks holding it.
fn ros2_info(path: &Path) -> Result<BagInfo> {
    if let Some(s) = crate::ros2::summary::sqlite_summary(path)? {
        return Ok(sqlite_info(path, &s));
    }
    let rec = crate::input::Recording::open(path)?;
    let index = rec.index();
    let counts = index.counts_by_connection();
    let mut topics = Vec::new();
    for topic in index.topics() {
        let conns = index.connections_of(topic);
        let n: u64 = conns
            .iter()
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .sum();
        let (mut first, mut last) = (u64::MAX, 0u64);
        for ch in index.chunks.iter().filter(|ch| ch.holds_any(&conns)) {
            first = first.min(ch.start_ns);
            last = last.max(ch.end_ns);
        }
        topics.push(topic_info(index, topic, &conns, n, (first, last)));
    }
    let compression = chunks_by_compression(index);
    let range = index.time_range();
    let version = match &rec {
        crate::input::Recording::Ros2(r) if r.metadata.is_some() => match rec.format() {
            "mcap" => "rosbag2 (mcap)",
            _ => "rosbag2 (sqlite3)",
        },
        _ => match rec.format() {
            "mcap" => "mcap",
            _ => "sqlite3",
        },
    };
    Ok(BagInfo {
        path: path.display().to_string(),
        version,
        size_bytes: index.file_len,
        start_ns: range.map(|r| r.0),
        end_ns: range.map(|r| r.1),
        start: range.map(|r| timefmt::utc(r.0)),
        end: range.map(|r| timefmt::utc(r.1)),
        duration_s: range.map(|(a, b)| (b - a) as f64 / 1e9).unwrap_or(0.0),
        messages: index.message_count(),
        chunks: index.chunks.len(),
        compression: Some(compression),
        uncompressed_bytes: Some(
            index
                .chunks
                .iter()
                .map(|c| c.uncompressed_size as u64)
                .sum(),
        ),
        connections: index.connections.len(),
        topics,
        recovered: rec.recovery(),
        counted_from: None,
    })
}

/// `info` of an SQLite recording from its summary. A topic counted from metadata.yaml (no
/// per-topic times) has its frequency over the recording's time range.
fn sqlite_info(path: &Path, s: &crate::ros2::summary::SqliteSummary) -> BagInfo {
    let mut topics: Vec<TopicInfo> = s
        .topics
        .iter()
        .map(|t| {
            let (first, last) = t.range.or(s.range).unwrap_or((0, 0));
            let n = t.messages;
            TopicInfo {
                topic: t.name.clone(),
                msgtype: t.msgtype.clone(),
                messages: n,
                frequency_hz: (n >= 2 && last > first)
                    .then(|| (n - 1) as f64 / ((last - first) as f64 / 1e9)),
                connections: 1,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    let mut compression = BTreeMap::new();
    for f in &s.files {
        *compression.entry(f.compression).or_insert(0) += 1;
    }
    let size: u64 = s.files.iter().map(|f| f.size_bytes).sum();
    BagInfo {
        path: path.display().to_string(),
        version: if s.with_metadata {
            "rosbag2 (sqlite3)"
        } else {
            "sqlite3"
        },
        size_bytes: size,
        start_ns: s.range.map(|r| r.0),
        end_ns: s.range.map(|r| r.1),
        start: s.range.map(|r| timefmt::utc(r.0)),
        end: s.range.map(|r| timefmt::utc(r.1)),
        duration_s: s.range.map(|(a, b)| (b - a) as f64 / 1e9).unwrap_or(0.0),
        messages: s.messages,
        chunks: s.files.len(),
        compression: Some(compression),
        uncompressed_bytes: Some(size),
        connections: s.topics.len(),
        topics,
        recovered: None,
        counted_from: Some(s.counted_from.name()),
    }
}

/// The `rosbag info`-like text.
pub(crate) fn render_text(info: &BagInfo) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let fmt_bytes = crate::memory::format_bytes;
    let _ = writeln!(s, "path:        {}", info.path);
    let _ = writeln!(s, "version:     {}", info.version);
    let _ = writeln!(
        s,
        "size:        {} ({} bytes)",
        fmt_bytes(info.size_bytes),
        info.size_bytes
    );
    match (info.start_ns, info.end_ns) {
        (Some(a), Some(b)) => {
            let _ = writeln!(
                s,
                "start:       {} ({})",
                timefmt::utc(a),
                crate::bag::record::format_time(a)
            );
            let _ = writeln!(
                s,
                "end:         {} ({})",
                timefmt::utc(b),
                crate::bag::record::format_time(b)
            );
            let _ = writeln!(
                s,
                "duration:    {} ({:.3}s)",
                timefmt::duration(b - a),
                info.duration_s
            );
        }
        _ => {
            let _ = writeln!(s, "start:       -\nend:         -\nduration:    0s");
        }
    }
    let _ = writeln!(s, "messages:    {}", info.messages);
    let kinds: Vec<String> = info
        .compression
        .iter()
        .flatten()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    let _ = writeln!(
        s,
        "chunks:      {}{}{}",
        info.chunks,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        info.uncompressed_bytes
            .map(|b| format!("  ({} uncompressed)", fmt_bytes(b)))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "connections: {}", info.connections);
    if let Some(from) = info.counted_from {
        let _ = writeln!(s, "counted from: {from} (chunks = storage files)");
    }
    let w_topic = info.topics.iter().map(|t| t.topic.len()).max().unwrap_or(0);
    let w_type = info
        .topics
        .iter()
        .map(|t| t.msgtype.len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "topics:{}",
        if info.topics.is_empty() {
            "      (none)"
        } else {
            ""
        }
    );
    for t in &info.topics {
        let freq = t
            .frequency_hz
            .map(|f| format!("{f:9.2} Hz"))
            .unwrap_or_else(|| "        - Hz".into());
        let conns = if t.connections > 1 {
            format!("  ({} connections)", t.connections)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:w_topic$}  {:w_type$}  {:>8} msgs {freq}{conns}",
            t.topic, t.msgtype, t.messages
        );
    }
    s
}
