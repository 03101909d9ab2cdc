//! Recovery of bags without a usable index: a recording killed before it closed the bag
//! (`index_pos` 0, a zero-size placeholder chunk followed by loose records), a copy cut short
//! (`index_pos` past the end, the last chunk cut), or an index section that does not parse.
//!
//! [`recover`] is the other way to build a [`BagIndex`] ([`super::open`] reads the index and
//! falls back to it): it rebuilds one by scanning the chunk section from `data_start`, like `rosbag reindex`, but also
//! keeps the loose connection and message records after a placeholder chunk and every complete
//! record in the readable part of a cut chunk (decompressing bz2/lz4 as far as the stream goes).
//!
//! What the scan finds is described as ordinary [`ChunkInfo`]s so the chunk reader reads it the
//! normal way: a loose region is a chunk of compression `none` over its bytes in the file
//! ([`ChunkInfo::loose`]); a cut or damaged chunk keeps only the prefix of complete records
//! ([`ChunkInfo::partial`], `uncompressed_size` = the prefix length).
//!
//! Memory: one chunk is decompressed at a time, into a buffer that grows with the output
//! actually produced and never beyond the chunk's declared size nor
//! [`MAX_RECOVERED_CHUNK_BYTES`]; message times are kept for later readers, 16 bytes per
//! message ([`ScanEntry`]), since recovered chunks have no index-data records.

use std::collections::HashSet;
use std::fmt;

use super::decompress::decompress_bounded;
use super::file::BagFile;
use super::index::{
    BagIndex, ChunkCompression, ChunkInfo, Connection, ScanEntry, connection_from_record,
};
use super::record::{Fields, Record, op};
use crate::error::Result;

/// Largest decompressed chunk the scan accepts: 512 MiB. A chunk record declaring more is
/// skipped with a warning naming its offset; its declared size is never allocated.
const MAX_RECOVERED_CHUNK_BYTES: u64 = 512 << 20;

/// Warnings listed in a [`RecoveryNote`]'s one-line summary; the rest are counted.
const LISTED_WARNINGS: usize = 3;

/// Why a bag's index was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryReason {
    /// `index_pos` is 0: the recording was killed before it wrote the index.
    NotClosed,
    /// `index_pos` points past the end of the file: a truncated copy.
    IndexPastEnd { index_pos: u64, file_len: u64 },
    /// The index section is there but does not parse.
    Damaged(String),
}

impl fmt::Display for RecoveryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryReason::NotClosed => write!(f, "no index (recording was not closed)"),
            RecoveryReason::IndexPastEnd {
                index_pos,
                file_len,
            } => write!(
                f,
                "index_pos {index_pos} is past the end of the file ({file_len} bytes; truncated copy?)"
            ),
            RecoveryReason::Damaged(what) => write!(f, "the index is unreadable ({what})"),
        }
    }
}

/// What a recovery scan did: shown once, as a warning, by every command that reads the bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryNote {
    pub reason: RecoveryReason,
    /// Messages recovered.
    pub messages: u64,
    /// Chunks (including loose-record regions) holding them.
    pub(crate) chunks: usize,
    /// What the scan had to skip or cut, each naming a file offset.
    pub warnings: Vec<String>,
    /// Records seen but not kept, at least: one per skipped or cut region, plus every message
    /// of a connection without a connection record.
    pub(crate) records_lost: u64,
}

impl fmt::Display for RecoveryNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; recovered {} messages in {} chunks by scanning",
            self.reason, self.messages, self.chunks
        )?;
        if !self.warnings.is_empty() {
            let listed: Vec<&str> = self
                .warnings
                .iter()
                .take(LISTED_WARNINGS)
                .map(String::as_str)
                .collect();
            write!(f, " ({}", listed.join("; "))?;
            let more = self.warnings.len().saturating_sub(LISTED_WARNINGS);
            if more > 0 {
                write!(f, "; {more} more")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// Rebuilds the index of `bag` by scanning its chunk section (see the module docs). Never fails
/// on damage inside the chunk section: what cannot be read is skipped or cut, with a warning.
pub(crate) fn recover(bag: &BagFile, reason: RecoveryReason) -> Result<(BagIndex, RecoveryNote)> {
    let header = bag.header();
    let bytes = bag.bytes();
    // An index section that is present (but damaged) ends the chunk section.
    let limit = if header.index_pos > header.data_start && header.index_pos <= bag.len() {
        header.index_pos as usize
    } else {
        bytes.len()
    };
    let mut scan = Scan {
        bytes: &bytes[..limit],
        connections: Vec::new(),
        seen: HashSet::new(),
        found: Vec::new(),
        warnings: Vec::new(),
    };
    super::file::trace::record(
        bag.path(),
        header.data_start,
        limit as u64 - header.data_start.min(limit as u64),
        super::file::ReadKind::Scan,
    );
    scan.run(header.data_start as usize);
    bag.release_all();

    // Messages of a connection no record describes cannot be decoded: drop them.
    let known: HashSet<u32> = scan.connections.iter().map(|c| c.id).collect();
    let mut unknown = 0u64;
    let mut chunks = Vec::new();
    let mut scanned = Vec::new();
    for (mut info, mut entries) in scan.found {
        let before = entries.len();
        entries.retain(|e| known.contains(&e.conn));
        unknown += (before - entries.len()) as u64;
        if entries.is_empty() {
            continue;
        }
        info.start_ns = entries.iter().map(|e| e.time_ns).min().unwrap_or(0);
        info.end_ns = entries.iter().map(|e| e.time_ns).max().unwrap_or(0);
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for e in &entries {
            match counts.iter_mut().find(|(c, _)| *c == e.conn) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.conn, 1)),
            }
        }
        info.counts = counts;
        chunks.push(info);
        scanned.push(entries);
    }
    if unknown > 0 {
        scan.warnings.push(format!(
            "{unknown} messages of connections without a connection record were dropped"
        ));
    }
    let messages = scanned.iter().map(|e| e.len() as u64).sum();
    let regions = scan.warnings.len() as u64 - u64::from(unknown > 0);
    let note = RecoveryNote {
        records_lost: regions + unknown,
        reason,
        messages,
        chunks: chunks.len(),
        warnings: scan.warnings,
    };
    let index = BagIndex::from_scan(header, bag.len(), scan.connections, chunks, scanned);
    Ok((index, note))
}

/// The state of one scan over `bytes` (the file up to the end of the chunk section).
struct Scan<'a> {
    bytes: &'a [u8],
    connections: Vec<Connection>,
    seen: HashSet<u32>,
    /// Chunks found, with their messages in file order (counts and times filled in later).
    found: Vec<(ChunkInfo, Vec<ScanEntry>)>,
    warnings: Vec<String>,
}

/// Why a walk over records stopped.
enum Stop {
    /// The data ended exactly after a record.
    End,
    /// A record runs past the end of the data (cut off).
    Incomplete { at: usize, what: String },
    /// A record with another op code (left for the caller).
    OtherOp { at: usize, op: u8 },
    /// A record that does not parse.
    Bad { at: usize, what: String },
}

/// The complete records at the start of some data.
struct Walk {
    /// Offset just past the last complete record kept.
    end: usize,
    entries: Vec<ScanEntry>,
    stop: Stop,
}

impl Scan<'_> {
    fn warn(&mut self, what: String) {
        self.warnings.push(what);
    }

    fn add_connection(&mut self, c: Connection) {
        if self.seen.insert(c.id) {
            self.connections.push(c);
        }
    }

    /// Walks the top-level records from `at` to the end of the chunk section.
    fn run(&mut self, mut at: usize) {
        let bytes = self.bytes;
        while at < bytes.len() {
            let (fields, data_at, data_len) = match Record::parse_header(bytes, at) {
                Ok(h) => h,
                Err(e) => {
                    self.warn(format!(
                        "the last {} bytes, at offset {at}, are an incomplete record ({})",
                        bytes.len() - at,
                        e.what
                    ));
                    return;
                }
            };
            let code = match fields.op() {
                Ok(c) => c,
                Err(e) => {
                    self.warn(format!(
                        "scan stopped at offset {at}: {} ({} bytes not read)",
                        e.what,
                        bytes.len() - at
                    ));
                    return;
                }
            };
            at = match code {
                op::CHUNK => self.chunk(at, fields, data_at, data_len as usize),
                op::MESSAGE_DATA | op::CONNECTION => self.loose(at, at),
                op::INDEX_DATA => match Record::parse(bytes, at) {
                    Ok(r) => r.end,
                    Err(_) => return,
                },
                // The index section (or what is left of it) starts here.
                op::CHUNK_INFO => return,
                other => {
                    self.warn(format!(
                        "scan stopped at offset {at}: unexpected record op {other:#04x} in the chunk \
                         section ({} bytes not read)",
                        bytes.len() - at
                    ));
                    return;
                }
            };
        }
    }

    /// Reads the chunk record at `pos`; returns where the next top-level record starts.
    fn chunk(&mut self, pos: usize, fields: Fields<'_>, data_at: usize, data_len: usize) -> usize {
        let end_of_section = self.bytes.len();
        let data_end = data_at.saturating_add(data_len);
        let cut = data_end > end_of_section;
        let next = data_end.min(end_of_section);
        let compression = match fields.get("compression") {
            Ok(v) => ChunkCompression::parse(v.unwrap_or(b"none")),
            Err(_) => None,
        };
        let Some(compression) = compression else {
            self.warn(format!(
                "chunk at offset {pos} skipped: unknown or unreadable compression field"
            ));
            return next;
        };
        let size = fields.u32("size").unwrap_or(0) as usize;
        if data_len == 0 {
            // A live recorder's placeholder: the chunk's records (or its compressed stream)
            // follow loose, up to the end of what was written.
            return match compression {
                ChunkCompression::None => self.loose(pos, data_at),
                _ => {
                    self.compressed(pos, data_at, end_of_section, compression, None, false);
                    end_of_section
                }
            };
        }
        match compression {
            ChunkCompression::None => {
                let bytes = self.bytes;
                let raw = &bytes[data_at..next];
                let walk = self.walk(raw, pos, false, cut);
                let partial = cut || walk.end != raw.len();
                if !cut && size != data_len {
                    self.warn(format!(
                        "chunk at offset {pos} declares size {size} but holds {data_len} bytes"
                    ));
                }
                if cut {
                    self.warn(format!(
                        "chunk at offset {pos} is cut off by the end of the file: kept its first {} \
                         of {data_len} bytes (complete records)",
                        walk.end
                    ));
                }
                self.push(
                    ChunkInfo {
                        pos: pos as u64,
                        compression,
                        uncompressed_size: walk.end as u32,
                        data_offset: data_at as u64,
                        data_len: walk.end as u32,
                        partial,
                        headed: true,
                        ..ChunkInfo::default()
                    },
                    walk.entries,
                );
            }
            _ => {
                if size as u64 > MAX_RECOVERED_CHUNK_BYTES {
                    self.warn(format!(
                        "chunk at offset {pos} skipped: it declares {size} bytes decompressed, more \
                         than the {MAX_RECOVERED_CHUNK_BYTES} bytes recovery accepts"
                    ));
                    return next;
                }
                self.compressed(pos, data_at, next, compression, Some(size), cut);
            }
        }
        next
    }

    /// Decompresses the stream in `[from, to)` as far as it goes (at most the `declared` size,
    /// none for a placeholder chunk) and keeps the complete records.
    fn compressed(
        &mut self,
        pos: usize,
        from: usize,
        to: usize,
        compression: ChunkCompression,
        declared: Option<usize>,
        cut: bool,
    ) {
        let bytes = self.bytes;
        let raw = &bytes[from..to];
        let max = MAX_RECOVERED_CHUNK_BYTES as usize;
        let limit = declared.map_or(max, |d| d.min(max));
        let (data, ended, damage) = decompress_bounded(raw, compression, limit);
        let walk = self.walk(&data, pos, false, cut || !ended || damage.is_some());
        let complete =
            ended && damage.is_none() && !cut && declared.is_none_or(|d| d == data.len());
        if let Some(what) = &damage {
            self.warn(format!(
                "{} chunk at offset {pos}: {what}; kept the {} bytes of complete records before it",
                compression.name(),
                walk.end
            ));
        } else if !complete {
            self.warn(format!(
                "{} chunk at offset {pos} is cut short: kept {} decompressed bytes of complete records",
                compression.name(),
                walk.end
            ));
        }
        self.push(
            ChunkInfo {
                pos: pos as u64,
                compression,
                uncompressed_size: walk.end as u32,
                data_offset: from as u64,
                data_len: raw.len() as u32,
                partial: !complete || walk.end != data.len(),
                headed: true,
                ..ChunkInfo::default()
            },
            walk.entries,
        );
    }

    /// Keeps the loose message and connection records from `from` on (after a placeholder chunk
    /// at `pos`, or at `pos` itself); returns where the first other record starts.
    fn loose(&mut self, pos: usize, from: usize) -> usize {
        let bytes = self.bytes;
        let walk = self.walk(&bytes[from..], pos, true, true);
        let end = from + walk.end;
        let next = match walk.stop {
            Stop::OtherOp { .. } => end,
            _ => bytes.len(),
        };
        if !walk.entries.is_empty() {
            self.push(
                ChunkInfo {
                    pos: pos as u64,
                    compression: ChunkCompression::None,
                    uncompressed_size: walk.end as u32,
                    data_offset: from as u64,
                    data_len: walk.end as u32,
                    loose: true,
                    headed: true,
                    ..ChunkInfo::default()
                },
                walk.entries,
            );
        }
        // Never stall: a region that kept nothing moves on past its first record.
        if next <= pos {
            return bytes.len();
        }
        next
    }

    /// The complete message and connection records at the start of `data` (a chunk's data, or
    /// the file from a loose region on). With `loose`, another op ends the walk quietly; with
    /// `cut` (data known to be cut short), so does an incomplete record.
    fn walk(&mut self, data: &[u8], pos: usize, loose: bool, cut: bool) -> Walk {
        let mut at = 0usize;
        let mut entries = Vec::new();
        let stop = loop {
            if at >= data.len() {
                break Stop::End;
            }
            let rec = match Record::parse(data, at) {
                Ok(r) => r,
                Err(e) => break Stop::Incomplete { at, what: e.what },
            };
            // Offsets into the kept data are u32 (like index-data records): a longer loose
            // region goes on as the next one.
            if rec.end > u32::MAX as usize {
                break Stop::OtherOp { at, op: 0 };
            }
            let fields = rec.fields();
            let code = match fields.op() {
                Ok(c) => c,
                Err(e) => break Stop::Bad { at, what: e.what },
            };
            match code {
                op::MESSAGE_DATA => {
                    match (fields.u32("conn"), fields.time("time")) {
                        (Ok(conn), Ok(time_ns)) => entries.push(ScanEntry {
                            time_ns,
                            conn,
                            offset: at as u32,
                        }),
                        (Err(e), _) | (_, Err(e)) => break Stop::Bad { at, what: e.what },
                    };
                }
                op::CONNECTION => match connection_from_record(&rec) {
                    Ok(c) => self.add_connection(c),
                    Err(e) => break Stop::Bad { at, what: e.what },
                },
                other => break Stop::OtherOp { at, op: other },
            }
            at = rec.end;
        };
        match &stop {
            Stop::End => {}
            // The end of the file cuts the last record of a loose region or a cut chunk: expected.
            Stop::Incomplete { at, what } if !loose && !cut => self.warn(format!(
                "chunk at offset {pos}: the record at byte {at} of its data is incomplete ({what})"
            )),
            Stop::Incomplete { .. } => {}
            Stop::OtherOp { .. } if loose => {}
            Stop::OtherOp { at, op } => self.warn(format!(
                "chunk at offset {pos}: unexpected record op {op:#04x} at byte {at} of its data; \
                 the rest of the chunk is skipped"
            )),
            Stop::Bad { at, what } => self.warn(format!(
                "{} at offset {pos}: bad record at byte {at}: {what}; the rest is skipped",
                if loose { "loose records" } else { "chunk" }
            )),
        }
        Walk {
            end: at,
            entries,
            stop,
        }
    }

    fn push(&mut self, info: ChunkInfo, entries: Vec<ScanEntry>) {
        self.found.push((info, entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_is_one_line_listing_a_few_problems() {
        let mut note = RecoveryNote {
            reason: RecoveryReason::NotClosed,
            messages: 40,
            chunks: 1,
            warnings: Vec::new(),
            records_lost: 0,
        };
        assert_eq!(
            note.to_string(),
            "no index (recording was not closed); recovered 40 messages in 1 chunks by scanning"
        );
        note.warnings = (0..5).map(|i| format!("w{i}")).collect();
        let text = note.to_string();
        assert!(text.ends_with("(w0; w1; w2; 2 more)"), "{text}");
        assert!(!text.contains('\n'));
        let past = RecoveryReason::IndexPastEnd {
            index_pos: 900,
            file_len: 400,
        };
        assert!(past.to_string().contains("index_pos 900 is past the end"));
    }
}
