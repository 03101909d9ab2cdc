//! One MCAP file: its channels and schemas, and its chunks as read units.
//!
//! An indexed file is described from its summary alone (the `mcap` crate's `Summary::read`:
//! channels, schemas, chunk indexes) plus the message-index records after each chunk (counts
//! and times per channel). A file without a usable summary (unclosed, truncated) is recovered
//! by a linear scan of its records, as ROS1 bags are. Chunks are read with positioned reads
//! (no page of the file stays mapped), and a chunk's declared decompressed size is checked
//! against the caller's limit before anything is allocated.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The 8 bytes an MCAP file starts (and, when complete, ends) with.
pub const MAGIC: &[u8; 8] = b"\x89MCAP0\r\n";

/// Largest schema or channel record accepted outside a chunk, in bytes.
const MAX_META_RECORD: u64 = 64 << 20;

/// Largest message-index section after one chunk read at once (16 bytes per message: 16 Mi
/// messages in one chunk); a larger declared length is not trusted.
const MAX_INDEX_BYTES: u64 = 256 << 20;

/// Largest run of top-level (unchunked) message records gathered into one read unit.
const LOOSE_UNIT_BYTES: u64 = 4 << 20;

/// Record opcodes (MCAP specification).
mod op {
    pub(crate) const FOOTER: u8 = 0x02;
    pub(crate) const SCHEMA: u8 = 0x03;
    pub(crate) const CHANNEL: u8 = 0x04;
    pub(crate) const MESSAGE: u8 = 0x05;
    pub(crate) const CHUNK: u8 = 0x06;
    pub(crate) const MESSAGE_INDEX: u8 = 0x07;
    pub(crate) const DATA_END: u8 = 0x0F;
}

/// A channel with its schema.
#[derive(Debug, Clone, Default)]
pub(crate) struct McapChannel {
    pub(crate) id: u16,
    pub(crate) topic: String,
    pub(crate) message_encoding: String,
    /// Schema name (the ROS 2 type), empty without a schema.
    pub(crate) schema_name: String,
    pub(crate) schema_encoding: String,
    /// Schema text; `None` without a schema.
    pub(crate) schema_data: Option<String>,
}

/// How a unit's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum McapCompression {
    None,
    Zstd,
    Lz4,
}

/// A chunk (or a run of top-level messages) read as one unit.
#[derive(Debug, Clone)]
pub struct McapUnit {
    /// Offset of the chunk record (or of the first loose record).
    pub record_offset: u64,
    /// Offset and length of the stored (compressed) records.
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) uncompressed_size: u64,
    pub(crate) compression: McapCompression,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Messages per channel.
    pub(crate) counts: Vec<(u16, u32)>,
    /// Offset and length of the message-index records after the chunk (0 when none).
    index_offset: u64,
    pub(crate) index_len: u64,
}

/// One message inside a unit's (decompressed) bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct McapMessage {
    pub(crate) channel: u16,
    pub(crate) log_time: u64,
    /// Payload position in the unit's bytes.
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// An open MCAP file.
#[derive(Debug)]
pub struct McapFile {
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) len: u64,
    pub(crate) channels: Vec<McapChannel>,
    pub units: Vec<McapUnit>,
    /// Why the summary was not used (the file was scanned), if it was not.
    pub(crate) recovered: Option<String>,
    /// Message count from the summary's statistics, when present.
    stats_messages: Option<u64>,
    library: String,
    profile: String,
}

fn bad(path: &Path, offset: u64, what: String) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        offset,
        what,
    }
}

/// Little-endian cursor over a record body; every read is length-checked.
struct Body<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// The fixed fields of a chunk record body, before its records.
struct ChunkHead {
    start: u64,
    end: u64,
    uncompressed_size: u64,
    compression: String,
    records_len: u64,
    /// Bytes from the body start to the records.
    head_len: u64,
}

fn parse_chunk_head(body: &[u8]) -> Option<ChunkHead> {
    let mut b = Body { b: body, pos: 0 };
    let start = b.u64()?;
    let end = b.u64()?;
    let uncompressed_size = b.u64()?;
    let _crc = b.u32()?;
    let compression = b.string()?;
    let records_len = b.u64()?;
    Some(ChunkHead {
        start,
        end,
        uncompressed_size,
        compression,
        records_len,
        head_len: b.pos as u64,
    })
}

fn compression_of(name: &str) -> Option<McapCompression> {
    match name {
        "" | "none" => Some(McapCompression::None),
        "zstd" => Some(McapCompression::Zstd),
        "lz4" => Some(McapCompression::Lz4),
        _ => None,
    }
}

/// Parses a schema record body: `(id, name, encoding, data)`.
fn parse_schema(body: &[u8]) -> Option<(u16, String, String, String)> {
    let mut b = Body { b: body, pos: 0 };
    let id = b.u16()?;
    let name = b.string()?;
    let enc = b.string()?;
    let n = b.u32()? as usize;
    let data = String::from_utf8_lossy(b.take(n)?).into_owned();
    Some((id, name, enc, data))
}

/// Parses a channel record body: `(id, schema id, topic, message encoding)`.
fn parse_channel(body: &[u8]) -> Option<(u16, u16, String, String)> {
    let mut b = Body { b: body, pos: 0 };
    let id = b.u16()?;
    let schema = b.u16()?;
    let topic = b.string()?;
    let enc = b.string()?;
    Some((id, schema, topic, enc))
}

/// Walks the records of a chunk's (decompressed) bytes: `f(opcode, body offset, body)`.
/// Returns the offset at which a malformed record stopped the walk, if one did.
fn walk_records(data: &[u8], mut f: impl FnMut(u8, usize, &[u8])) -> Option<(usize, String)> {
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 9) else {
            return Some((pos, format!("record header cut at byte {pos}")));
        };
        let opcode = head[0];
        let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
        let body_at = pos + 9;
        let left = (data.len() - body_at) as u64;
        if len > left {
            return Some((
                pos,
                format!("record of {len} bytes at byte {pos} but {left} are left"),
            ));
        }
        let body = &data[body_at..body_at + len as usize];
        f(opcode, body_at, body);
        pos = body_at + len as usize;
    }
    None
}

/// The messages of a unit's records (a chunk's decompressed bytes or a run of loose records),
/// in record order; and the malformed record that stopped the walk, if any.
pub(crate) fn unit_messages(data: &[u8]) -> (Vec<McapMessage>, Option<(usize, String)>) {
    let mut out = Vec::new();
    let mut bad_message = None;
    let cut = walk_records(data, |opcode, at, body| {
        if opcode != op::MESSAGE {
            return;
        }
        if body.len() < 22 {
            bad_message.get_or_insert((at, format!("message record of {} bytes", body.len())));
            return;
        }
        let channel = u16::from_le_bytes([body[0], body[1]]);
        let log_time = u64::from_le_bytes(body[6..14].try_into().unwrap_or([0; 8]));
        out.push(McapMessage {
            channel,
            log_time,
            start: at + 22,
            len: body.len() - 22,
        });
    });
    (out, cut.or(bad_message))
}

/// Up to this much of a declared decompressed size is reserved up front; beyond it the buffer
/// grows with what the stream really yields, so a lying size costs nothing.
const PREALLOCATE_MAX: usize = 64 << 20;

/// Reads a decompressing stream that must yield exactly `want` bytes.
fn read_exactly(dec: impl std::io::Read, want: usize) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(want.min(PREALLOCATE_MAX));
    dec.take(want as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() != want {
        return Err(format!(
            "decompressed to {}{} bytes, declared {want}",
            out.len(),
            if out.len() > want { "+" } else { "" }
        ));
    }
    Ok(out)
}

impl McapFile {
    pub fn open(path: &Path) -> Result<McapFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut magic = [0u8; 8];
        if len < 8 || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
            return Err(Error::Recording {
                path: path.to_path_buf(),
                what: "not an MCAP file (bad magic)".into(),
            });
        }
        let mut f = McapFile {
            path: path.to_path_buf(),
            file,
            len,
            channels: Vec::new(),
            units: Vec::new(),
            recovered: None,
            stats_messages: None,
            library: String::new(),
            profile: String::new(),
        };
        f.read_header();
        match f.read_summary() {
            Ok(true) => {}
            Ok(false) => {
                f.recovered = Some("no summary section".into());
                f.scan()?;
            }
            Err(why) => {
                f.recovered = Some(why);
                f.channels.clear();
                f.units.clear();
                f.scan()?;
            }
        }
        Ok(f)
    }

    fn read_header(&mut self) {
        let mut head = [0u8; 9];
        if self.file.read_exact_at(&mut head, 8).is_err() || head[0] != 0x01 {
            return;
        }
        let n = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
        if n > 1 << 20 {
            return;
        }
        let Ok(body) = self.read_at(17, n) else {
            return;
        };
        let mut b = Body { b: &body, pos: 0 };
        self.profile = b.string().unwrap_or_default();
        self.library = b.string().unwrap_or_default();
    }

    /// Bytes `[offset, offset + n)` of the file, read (not mapped).
    fn read_at(&self, offset: u64, n: u64) -> Result<Vec<u8>> {
        if offset.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(bad(
                &self.path,
                offset,
                format!(
                    "{n} bytes at offset {offset} run past the end of the file ({} bytes)",
                    self.len
                ),
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Describes the file from its summary; `Ok(false)` when it has none, `Err(why)` when the
    /// summary is unusable.
    fn read_summary(&mut self) -> std::result::Result<bool, String> {
        let map = unsafe { memmap2::Mmap::map(&self.file) }.map_err(|e| e.to_string())?;
        let summary = match mcap::read::Summary::read(&map) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(false),
            Err(e) => return Err(format!("unusable summary: {e}")),
        };
        self.stats_messages = summary.stats.as_ref().map(|s| s.message_count);
        if summary.chunk_indexes.is_empty() && self.stats_messages.is_none_or(|n| n > 0) {
            // Messages outside chunks (or no statistics to say there are none): scan.
            return Err("summary without chunk indexes".into());
        }
        let mut ids: Vec<&u16> = summary.channels.keys().collect();
        ids.sort();
        for id in ids {
            let c = &summary.channels[id];
            self.channels.push(McapChannel {
                id: c.id,
                topic: c.topic.clone(),
                message_encoding: c.message_encoding.clone(),
                schema_name: c
                    .schema
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                schema_encoding: c
                    .schema
                    .as_ref()
                    .map(|s| s.encoding.clone())
                    .unwrap_or_default(),
                schema_data: c
                    .schema
                    .as_ref()
                    .map(|s| String::from_utf8_lossy(&s.data).into_owned()),
            });
        }
        let mut chunks = summary.chunk_indexes.clone();
        chunks.sort_by_key(|c| c.chunk_start_offset);
        drop(summary);
        drop(map);
        for ci in chunks {
            let compression = compression_of(&ci.compression)
                .ok_or_else(|| format!("unsupported chunk compression {:?}", ci.compression))?;
            // Chunk record: opcode, length, then start, end, size, crc, compression, records length.
            let head = 1 + 8 + 8 + 8 + 8 + 4 + 4 + ci.compression.len() as u64 + 8;
            let data_offset = ci.chunk_start_offset + head;
            if data_offset
                .checked_add(ci.compressed_size)
                .is_none_or(|end| end > self.len)
            {
                return Err(format!(
                    "chunk at offset {} runs past the end of the file",
                    ci.chunk_start_offset
                ));
            }
            let index_offset = ci.chunk_start_offset.saturating_add(ci.chunk_length);
            let mut unit = McapUnit {
                record_offset: ci.chunk_start_offset,
                data_offset,
                data_len: ci.compressed_size,
                uncompressed_size: ci.uncompressed_size,
                compression,
                start_ns: ci.message_start_time,
                end_ns: ci.message_end_time,
                counts: Vec::new(),
                index_offset,
                index_len: ci.message_index_length,
            };
            if ci.message_index_length > 0 && !ci.message_index_offsets.is_empty() {
                let mut counts: Vec<(u16, u32)> = Vec::new();
                self.visit_message_index(&unit, |ch, _| {
                    match counts.iter_mut().find(|(c, _)| *c == ch) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((ch, 1)),
                    }
                })
                .map_err(|e| e.to_string())?;
                unit.counts = counts;
            } else {
                unit.index_len = 0;
                // No message index: count by reading the chunk once.
                let (data, _) = self
                    .read_unit(&unit, super::MAX_UNIT_BYTES)
                    .map_err(|e| e.to_string())?;
                let (msgs, _) = unit_messages(&data);
                for m in msgs {
                    match unit.counts.iter_mut().find(|(c, _)| *c == m.channel) {
                        Some((_, n)) => *n += 1,
                        None => unit.counts.push((m.channel, 1)),
                    }
                }
            }
            self.units.push(unit);
        }
        Ok(true)
    }

    /// Calls `f(channel, log_time)` for every entry of the message-index records of `unit`.
    pub(crate) fn visit_message_index(
        &self,
        unit: &McapUnit,
        mut f: impl FnMut(u16, u64),
    ) -> Result<()> {
        if unit.index_len == 0 {
            return Ok(());
        }
        if unit.index_len > MAX_INDEX_BYTES {
            return Err(bad(
                &self.path,
                unit.index_offset,
                format!(
                    "message index of {} bytes after one chunk (more than {MAX_INDEX_BYTES})",
                    unit.index_len
                ),
            ));
        }
        let data = self.read_at(unit.index_offset, unit.index_len)?;
        let mut problem = None;
        walk_records(&data, |opcode, at, body| {
            if opcode != op::MESSAGE_INDEX {
                return;
            }
            let mut b = Body { b: body, pos: 0 };
            let (Some(ch), Some(n)) = (b.u16(), b.u32()) else {
                problem.get_or_insert(at);
                return;
            };
            let Some(entries) = b.take(n as usize) else {
                problem.get_or_insert(at);
                return;
            };
            for e in entries.chunks_exact(16) {
                f(ch, u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8])));
            }
        });
        if let Some(at) = problem {
            return Err(bad(
                &self.path,
                unit.index_offset + at as u64,
                "malformed message index record".into(),
            ));
        }
        Ok(())
    }

    /// Rebuilds channels and units by walking the file's records from the start; a record cut
    /// by the end of the file ends the walk (what came before it is kept).
    fn scan(&mut self) -> Result<()> {
        crate::bag::file::trace::record(&self.path, 0, self.len, crate::bag::file::ReadKind::Scan);
        let mut schemas: HashMap<u16, (String, String, String)> = HashMap::new();
        let mut channels: HashMap<u16, (u16, String, String)> = HashMap::new();
        let mut order: Vec<u16> = Vec::new();
        let mut pos = 8u64;
        let mut loose: Option<McapUnit> = None;
        let mut note = |ch: u16, schema: u16, topic: String, enc: String, order: &mut Vec<u16>| {
            if let std::collections::hash_map::Entry::Vacant(e) = channels.entry(ch) {
                e.insert((schema, topic, enc));
                order.push(ch);
            }
        };
        while pos + 9 <= self.len {
            let head = self.read_at(pos, 9)?;
            let opcode = head[0];
            let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
            let body_at = pos + 9;
            if len > self.len - body_at {
                let why = format!("record at offset {pos} is cut by the end of the file");
                self.recovered = Some(match self.recovered.take() {
                    Some(r) => format!("{r}; {why}"),
                    None => why,
                });
                break;
            }
            if opcode != op::MESSAGE
                && let Some(u) = loose.take()
            {
                self.units.push(u);
            }
            match opcode {
                op::SCHEMA | op::CHANNEL if len <= MAX_META_RECORD => {
                    let body = self.read_at(body_at, len)?;
                    if opcode == op::SCHEMA {
                        if let Some((id, name, enc, data)) = parse_schema(&body) {
                            schemas.entry(id).or_insert((name, enc, data));
                        }
                    } else if let Some((id, schema, topic, enc)) = parse_channel(&body) {
                        note(id, schema, topic, enc, &mut order);
                    }
                }
                op::MESSAGE if len >= 22 => {
                    let body = self.read_at(body_at, 22)?;
                    let ch = u16::from_le_bytes([body[0], body[1]]);
                    let t = u64::from_le_bytes(body[6..14].try_into().unwrap_or([0; 8]));
                    let full = {
                        let u = loose.get_or_insert(McapUnit {
                            record_offset: pos,
                            data_offset: pos,
                            data_len: 0,
                            uncompressed_size: 0,
                            compression: McapCompression::None,
                            start_ns: t,
                            end_ns: t,
                            counts: Vec::new(),
                            index_offset: 0,
                            index_len: 0,
                        });
                        u.data_len = body_at + len - u.data_offset;
                        u.uncompressed_size = u.data_len;
                        u.start_ns = u.start_ns.min(t);
                        u.end_ns = u.end_ns.max(t);
                        match u.counts.iter_mut().find(|(c, _)| *c == ch) {
                            Some((_, n)) => *n += 1,
                            None => u.counts.push((ch, 1)),
                        }
                        u.data_len >= LOOSE_UNIT_BYTES
                    };
                    if full && let Some(u) = loose.take() {
                        self.units.push(u);
                    }
                }
                op::CHUNK => {
                    let head_len = 8 + 8 + 8 + 4 + 4;
                    let probe = self.read_at(body_at, len.min(head_len + 64 + 8))?;
                    let Some(h) = parse_chunk_head(&probe).filter(|h| {
                        h.head_len
                            .checked_add(h.records_len)
                            .is_some_and(|n| n <= len)
                    }) else {
                        return Err(bad(&self.path, pos, "malformed chunk record".into()));
                    };
                    let compression = compression_of(&h.compression).ok_or_else(|| {
                        bad(
                            &self.path,
                            pos,
                            format!("unsupported chunk compression {:?}", h.compression),
                        )
                    })?;
                    let mut unit = McapUnit {
                        record_offset: pos,
                        data_offset: body_at + h.head_len,
                        data_len: h.records_len,
                        uncompressed_size: h.uncompressed_size,
                        compression,
                        start_ns: h.start,
                        end_ns: h.end,
                        counts: Vec::new(),
                        index_offset: 0,
                        index_len: 0,
                    };
                    // Channels and schemas may be inside the chunk: read it once.
                    match self.read_unit(&unit, super::MAX_UNIT_BYTES) {
                        Ok((data, _)) => {
                            walk_records(&data, |opc, _, body| match opc {
                                op::SCHEMA => {
                                    if let Some((id, name, enc, d)) = parse_schema(body) {
                                        schemas.entry(id).or_insert((name, enc, d));
                                    }
                                }
                                op::CHANNEL => {
                                    if let Some((id, s, t, e)) = parse_channel(body) {
                                        note(id, s, t, e, &mut order);
                                    }
                                }
                                op::MESSAGE if body.len() >= 22 => {
                                    let ch = u16::from_le_bytes([body[0], body[1]]);
                                    match unit.counts.iter_mut().find(|(c, _)| *c == ch) {
                                        Some((_, n)) => *n += 1,
                                        None => unit.counts.push((ch, 1)),
                                    }
                                }
                                _ => {}
                            });
                            if unit.counts.iter().any(|(_, n)| *n > 0) {
                                self.units.push(unit);
                            }
                        }
                        Err(e) => {
                            let why = format!("skipped a damaged chunk: {e}");
                            self.recovered = Some(match self.recovered.take() {
                                Some(r) => format!("{r}; {why}"),
                                None => why,
                            });
                        }
                    }
                }
                op::DATA_END | op::FOOTER => break,
                _ => {}
            }
            pos = body_at + len;
        }
        if let Some(u) = loose.take() {
            self.units.push(u);
        }
        for id in order {
            let (schema_id, topic, enc) = channels[&id].clone();
            let schema = schemas.get(&schema_id);
            self.channels.push(McapChannel {
                id,
                topic,
                message_encoding: enc,
                schema_name: schema.map(|s| s.0.clone()).unwrap_or_default(),
                schema_encoding: schema.map(|s| s.1.clone()).unwrap_or_default(),
                schema_data: schema.map(|s| s.2.clone()),
            });
        }
        Ok(())
    }

    /// Reads and decompresses one unit. `limit` bounds the decompressed size: a larger
    /// declared size is refused before anything is allocated. Returns the records' bytes and
    /// the bytes read from the file.
    pub fn read_unit(&self, unit: &McapUnit, limit: u64) -> Result<(Vec<u8>, u64)> {
        if unit.uncompressed_size > limit {
            return Err(bad(
                &self.path,
                unit.record_offset,
                format!(
                    "chunk declares {} decompressed bytes, more than the {limit} allowed",
                    unit.uncompressed_size
                ),
            ));
        }
        let stored = self.read_at(unit.data_offset, unit.data_len)?;
        let want = unit.uncompressed_size as usize;
        let data = match unit.compression {
            McapCompression::None => stored,
            // A believable size is decoded in one call straight into a buffer of that size
            // (no window buffer of zstd's own, which would come from the C allocator and stay
            // resident); a larger one streams, growing with what the stream really yields.
            McapCompression::Zstd if want <= PREALLOCATE_MAX => {
                let out = zstd::bulk::decompress(&stored, want)
                    .map_err(|e| bad(&self.path, unit.record_offset, format!("zstd chunk: {e}")))?;
                if out.len() != want {
                    return Err(bad(
                        &self.path,
                        unit.record_offset,
                        format!(
                            "zstd chunk: decompressed to {} bytes, declared {want}",
                            out.len()
                        ),
                    ));
                }
                out
            }
            McapCompression::Zstd => {
                let dec = zstd::stream::read::Decoder::new(&stored[..])
                    .map_err(|e| bad(&self.path, unit.record_offset, format!("zstd chunk: {e}")))?;
                read_exactly(dec, want).map_err(|what| {
                    bad(
                        &self.path,
                        unit.record_offset,
                        format!("zstd chunk: {what}"),
                    )
                })?
            }
            McapCompression::Lz4 => {
                let dec = lz4::Decoder::new(&stored[..])
                    .map_err(|e| bad(&self.path, unit.record_offset, format!("lz4 chunk: {e}")))?;
                read_exactly(dec, want).map_err(|what| {
                    bad(&self.path, unit.record_offset, format!("lz4 chunk: {what}"))
                })?
            }
        };
        Ok((data, unit.data_len))
    }
}
