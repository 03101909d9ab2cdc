//! `bag2dataset dump`: decoded messages as JSON Lines in the golden format of
//! ../shared/testdata/README.md, ordered by record time like the goldens (in file order for a
//! bag recovered by a scan, like its golden).

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::{Exit, write_stdout};
use crate::bag::chunk_reader::{ChunkData, read_chunk};
use crate::bag::record::Record;
use crate::bag::{BagFile, BagIndex, RecoveryNote};
use crate::cli::DumpArgs;
use crate::error::{Error, Result};
use crate::input::Recording;
use crate::msg::{MessageSchema, to_golden_json};

/// Decompressed chunks kept while dumping (entries of out-of-order chunks interleave).
const CACHED_CHUNKS: usize = 2;

/// What to dump.
#[derive(Debug, Default, Clone)]
pub struct DumpFilter {
    pub topics: Vec<String>,
    pub limit: Option<u64>,
    /// Seconds after the bag's first message.
    pub start: Option<f64>,
    pub end: Option<f64>,
}

/// Calls `emit` with each decoded message line (golden format), in golden order. Stops early
/// when `emit` returns false. A bag without a usable index is recovered by a scan, with one
/// warning on stderr.
pub fn dump_bag(
    path: &Path,
    filter: &DumpFilter,
    emit: impl FnMut(serde_json::Value) -> bool,
) -> Result<u64> {
    dump_bag_with(
        path,
        filter,
        |note| eprintln!("warning: {}: {note}", path.display()),
        emit,
    )
}

/// [`dump_bag`], handing the recovery note (if the bag had to be recovered) to `on_note`
/// instead of printing it. Messages of a recovered bag come in file order, like its golden.
pub fn dump_bag_with(
    path: &Path,
    filter: &DumpFilter,
    on_note: impl FnOnce(&RecoveryNote),
    mut emit: impl FnMut(serde_json::Value) -> bool,
) -> Result<u64> {
    if crate::ros2::is_ros2_path(path) {
        let rec = Recording::open(path)?;
        if let Some(why) = rec.recovery() {
            crate::diag::warn(&format!("{}: read by a scan: {why}", path.display()));
        }
        return dump_recording(&rec, filter, emit);
    }
    let bag = BagFile::open(path)?;
    let (index, note) = BagIndex::open_verified(&bag)?;
    if let Some(note) = &note {
        on_note(note);
    }
    let mut conns: Vec<u32> = Vec::new();
    for t in &filter.topics {
        let ids = index.connections_of(t);
        if ids.is_empty() {
            return Err(Error::Usage(format!(
                "{}: no topic {t} (topics: {})",
                path.display(),
                index.topics().join(", ")
            )));
        }
        conns.extend(ids);
    }
    if filter.topics.is_empty() {
        conns = index.connections.iter().map(|c| c.id).collect();
    }
    let origin = index.time_range().map_or(0, |r| r.0);
    let bound = |s: Option<f64>, default: u64| {
        s.map_or(default, |s| {
            origin.saturating_add((s.max(0.0) * 1e9) as u64)
        })
    };
    let (t0, t1) = (bound(filter.start, 0), bound(filter.end, u64::MAX));
    let entries = if index.is_recovered() {
        index.entries_in_file_order(&bag, &conns)?
    } else {
        index.entries(&bag, &conns)?
    };
    let mut schemas: HashMap<u32, std::result::Result<MessageSchema, String>> = HashMap::new();
    let mut cache: Vec<(u32, ChunkData<'_>)> = Vec::new();
    let mut written = 0u64;
    for e in entries {
        if e.time_ns < t0 || e.time_ns > t1 {
            continue;
        }
        if filter.limit.is_some_and(|l| written >= l) {
            break;
        }
        let chunk = &index.chunks[e.chunk as usize];
        if !cache.iter().any(|(c, _)| *c == e.chunk) {
            if cache.len() >= CACHED_CHUNKS {
                let (old, _) = cache.remove(0);
                let oc = &index.chunks[old as usize];
                bag.release(oc.pos, oc.end() - oc.pos);
            }
            cache.push((e.chunk, read_chunk(&bag, chunk)?));
        }
        let data = cache
            .iter()
            .find(|(c, _)| *c == e.chunk)
            .map(|(_, d)| d.bytes())
            .unwrap_or_default();
        let rec = Record::parse(data, e.offset as usize).map_err(|err| Error::Malformed {
            path: path.to_path_buf(),
            offset: chunk.pos,
            what: format!(
                "index points at byte {} of the chunk: {}",
                e.offset, err.what
            ),
        })?;
        let conn = index.connection(e.conn).ok_or_else(|| Error::Malformed {
            path: path.to_path_buf(),
            offset: chunk.pos,
            what: format!("index data names unknown connection {}", e.conn),
        })?;
        let schema = schemas.entry(e.conn).or_insert_with(|| {
            MessageSchema::parse(&conn.msgtype, &conn.definition).map_err(|d| d.what)
        });
        let mut line = json!({
            "topic": conn.topic,
            "msgtype": conn.msgtype,
            "conn": e.conn,
            "time_ns": e.time_ns,
            "raw_len": rec.data.len(),
        });
        match schema.as_ref().map(|s| (s, s.decode(rec.data))) {
            Ok((s, Ok(v))) => line["data"] = to_golden_json(s, &v),
            Ok((_, Err(err))) => {
                line["data"] = serde_json::Value::Null;
                line["error"] = json!(err.to_string());
            }
            Err(what) => {
                line["data"] = serde_json::Value::Null;
                line["error"] = json!(format!("bad message definition: {what}"));
            }
        }
        written += 1;
        if !emit(line) {
            break;
        }
    }
    Ok(written)
}

/// Decompressed units kept while dumping a ROS 2 recording.
const CACHED_UNITS: usize = 2;

/// [`dump_bag`] of any recording through the input layer: one pass over the units (file
/// order) lists every message's time, a stable sort puts them in receive-time order (ties in
/// storage order, as the goldens break them; file order for a recording read by a scan), and
/// a second pass decodes them with a small cache of units.
pub fn dump_recording(
    rec: &Recording,
    filter: &DumpFilter,
    mut emit: impl FnMut(serde_json::Value) -> bool,
) -> Result<u64> {
    let path = rec.path();
    let index = rec.index();
    let mut conns: Vec<u32> = Vec::new();
    for t in &filter.topics {
        let ids = index.connections_of(t);
        if ids.is_empty() {
            return Err(Error::Usage(format!(
                "{}: no topic {t} (topics: {})",
                path.display(),
                index.topics().join(", ")
            )));
        }
        conns.extend(ids);
    }
    if filter.topics.is_empty() {
        conns = index.connections.iter().map(|c| c.id).collect();
    }
    let origin = index.time_range().map_or(0, |r| r.0);
    let bound = |s: Option<f64>, default: u64| {
        s.map_or(default, |s| {
            origin.saturating_add((s.max(0.0) * 1e9) as u64)
        })
    };
    let (t0, t1) = (bound(filter.start, 0), bound(filter.end, u64::MAX));
    // (time, unit, message index in the unit).
    let mut entries: Vec<(u64, u32, u32)> = Vec::new();
    for ci in 0..index.chunks.len() {
        if !index.chunks[ci].holds_any(&conns) {
            continue;
        }
        let unit = rec.read_unit(ci, Some(&conns), false)?;
        for (k, m) in unit.messages().enumerate() {
            if m.time_ns >= t0 && m.time_ns <= t1 {
                entries.push((m.time_ns, ci as u32, k as u32));
            }
        }
        if let Some(e) = &unit.cut {
            crate::diag::warn(&format!("{e} (the messages before it are kept)"));
        }
    }
    if !rec.is_recovered() {
        entries.sort_by_key(|e| e.0);
    }
    let mut schemas: HashMap<u32, std::result::Result<MessageSchema, String>> = HashMap::new();
    let mut cache: Vec<(u32, crate::input::Unit<'_>)> = Vec::new();
    let mut written = 0u64;
    for (_, ci, k) in entries {
        if filter.limit.is_some_and(|l| written >= l) {
            break;
        }
        if !cache.iter().any(|(c, _)| *c == ci) {
            if cache.len() >= CACHED_UNITS {
                cache.remove(0);
            }
            cache.push((ci, rec.read_unit(ci as usize, Some(&conns), false)?));
        }
        let Some(m) = cache
            .iter()
            .find(|(c, _)| *c == ci)
            .and_then(|(_, u)| u.message(k as usize))
        else {
            continue;
        };
        let Some(conn) = index.connection(m.conn) else {
            continue;
        };
        let schema = schemas.entry(m.conn).or_insert_with(|| rec.schema(m.conn));
        let (local, file) = rec.conn_label(m.conn);
        let mut line = json!({
            "topic": conn.topic,
            "msgtype": conn.msgtype,
            "conn": local,
        });
        if let Some(f) = file {
            line["file"] = json!(f);
        }
        line["time_ns"] = json!(m.time_ns);
        line["raw_len"] = json!(m.data.len());
        let fail = |line: &mut serde_json::Value, what: String| {
            use sha2::{Digest, Sha256};
            let hex: String = Sha256::digest(m.data)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            line["raw_sha256"] = json!(hex);
            line["data"] = serde_json::Value::Null;
            line["error"] = json!(what);
        };
        match schema.as_ref().map(|s| (s, s.decode(m.data))) {
            Ok((s, Ok(v))) => line["data"] = to_golden_json(s, &v),
            Ok((_, Err(err))) => fail(&mut line, err.to_string()),
            Err(what) => fail(&mut line, format!("no decoder: {what}")),
        }
        written += 1;
        if !emit(line) {
            break;
        }
    }
    Ok(written)
}

/// Most threads of a decode-only pass.
const COUNT_THREADS_MAX: usize = 8;

/// What a decode-only pass (`dump --count`) found, per topic.
#[derive(Debug, Default, serde::Serialize)]
struct TopicCount {
    messages: u64,
    payload_bytes: u64,
    /// Messages that do not match their definition.
    errors: u64,
}

/// Decode-only pass over every message of `topics` (all when empty), chunk by chunk in file
/// order: the decoder's throughput with nothing else in the way (no JSON, no ordering).
fn count_bag(
    path: &Path,
    topics: &[String],
) -> Result<std::collections::BTreeMap<String, TopicCount>> {
    if crate::ros2::is_ros2_path(path) {
        let rec = Recording::open(path)?;
        let index = rec.index();
        let mut counts: std::collections::BTreeMap<String, TopicCount> = Default::default();
        let mut schemas: HashMap<u32, Option<MessageSchema>> = HashMap::new();
        let wanted: Vec<u32> = index
            .connections
            .iter()
            .filter(|c| topics.is_empty() || topics.contains(&c.topic))
            .map(|c| c.id)
            .collect();
        for ci in index.chunks_for(&wanted, 0, u64::MAX) {
            let unit = rec.read_unit(ci, Some(&wanted), false)?;
            for m in unit.messages() {
                let Some(conn) = index.connection(m.conn) else {
                    continue;
                };
                let schema = schemas
                    .entry(m.conn)
                    .or_insert_with(|| rec.schema(m.conn).ok());
                let c = counts.entry(conn.topic.clone()).or_default();
                c.messages += 1;
                c.payload_bytes += m.data.len() as u64;
                if schema.as_ref().is_none_or(|s| s.decode(m.data).is_err()) {
                    c.errors += 1;
                }
            }
        }
        return Ok(counts);
    }
    let bag = BagFile::open(path)?;
    let (index, note) = BagIndex::open_verified(&bag)?;
    if let Some(note) = &note {
        crate::diag::warn(&format!("{}: {note}", path.display()));
    }
    let mut schemas: HashMap<u32, Option<(MessageSchema, String)>> = HashMap::new();
    for c in &index.connections {
        if topics.is_empty() || topics.contains(&c.topic) {
            schemas.insert(
                c.id,
                MessageSchema::parse(&c.msgtype, &c.definition)
                    .ok()
                    .map(|s| (s, c.topic.clone())),
            );
        }
    }
    let wanted: Vec<u32> = schemas.keys().copied().collect();
    let chunks = index.chunks_for(&wanted, 0, u64::MAX);
    // Chunks are independent: decode them on every core, one chunk at a time per thread.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(COUNT_THREADS_MAX);
    let parts: Vec<Result<std::collections::BTreeMap<String, TopicCount>>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (bag, index, schemas, chunks) = (&bag, &index, &schemas, &chunks);
                    scope.spawn(move || {
                        let mut counts: std::collections::BTreeMap<String, TopicCount> =
                            std::collections::BTreeMap::new();
                        for &ci in chunks.iter().skip(t).step_by(threads) {
                            let chunk = &index.chunks[ci];
                            let data = read_chunk(bag, chunk)?;
                            for m in crate::bag::chunk_reader::messages(data.bytes()) {
                                let m = m.map_err(|e| {
                                    crate::bag::chunk_reader::chunk_error(bag, chunk, e)
                                })?;
                                let Some(Some((schema, topic))) = schemas.get(&m.conn) else {
                                    continue;
                                };
                                let c = counts.entry(topic.clone()).or_default();
                                c.messages += 1;
                                c.payload_bytes += m.data.len() as u64;
                                if schema.decode(m.data).is_err() {
                                    c.errors += 1;
                                }
                            }
                            drop(data);
                            bag.release(chunk.pos, chunk.end() - chunk.pos);
                        }
                        Ok(counts)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|p| Err(Error::thread_panicked("decode", p.as_ref())))
                })
                .collect()
        });
    let mut counts: std::collections::BTreeMap<String, TopicCount> =
        std::collections::BTreeMap::new();
    for part in parts {
        for (topic, c) in part? {
            let t = counts.entry(topic).or_default();
            t.messages += c.messages;
            t.payload_bytes += c.payload_bytes;
            t.errors += c.errors;
        }
    }
    Ok(counts)
}

pub(crate) fn run(args: DumpArgs) -> anyhow::Result<Exit> {
    if args.count {
        let started = std::time::Instant::now();
        let counts = count_bag(&args.bag, &args.topics)?;
        let wall = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&args.bag).map(|m| m.len()).unwrap_or(0);
        let report = json!({
            "bag": args.bag.display().to_string(),
            "bytes": size,
            "wall_s": wall,
            "mb_per_s": if wall > 0.0 { size as f64 / 1e6 / wall } else { 0.0 },
            "messages": counts.values().map(|c| c.messages).sum::<u64>(),
            "errors": counts.values().map(|c| c.errors).sum::<u64>(),
            "topics": counts,
        });
        write_stdout(&mut io::stdout().lock(), format!("{report:#}\n").as_bytes())?;
        return Ok(Exit::Ok);
    }
    let filter = DumpFilter {
        topics: args.topics,
        limit: args.limit,
        start: args.start,
        end: args.end,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut failure = None;
    dump_bag(&args.bag, &filter, |line| {
        let mut text = line.to_string();
        text.push('\n');
        match write_stdout(&mut out, text.as_bytes()) {
            Ok(go) => go,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(Exit::Ok),
    }
}
