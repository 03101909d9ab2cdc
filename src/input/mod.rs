//! The input layer: one recording, whatever stores it. A ROS1 bag, a rosbag2 directory, an
//! MCAP file and an SQLite file all look the same from here on:
//!
//! - `index()`: connections (topic, type, definition) and read units (ROS1 chunks, MCAP
//!   chunks, runs of SQLite rows in time order) in storage order, each with its byte size,
//!   time range and per-connection counts;
//! - `schema(conn)`: the decode plan of a connection (ROS1 serialization or CDR);
//! - `topic_span(conns)`: how many and
//!   the first and last of them, for the timeline, from the index's edges alone;
//! - `read_unit(i)`: one unit's payloads, read under the caller's budget.
//!
//! A fourth format is one more variant here and one more module beside `bag` and `ros2`.
//! This module depends on `bag` and `ros2`; neither depends on it.

use std::path::Path;

use crate::bag::chunk_reader::{
    ChunkData, StoredChunk, chunk_error, heap_needed, messages, read_chunk, read_chunk_copied,
};
use crate::bag::index::{CHUNK_HEADER_READ, ChunkCompression, ChunkInfo};
use crate::bag::{BagFile, BagIndex, RecoveryNote};
use crate::error::{Error, Result};
use crate::memory::Permit;
use crate::msg::MessageSchema;
use crate::ros2::{Ros2Bag, Storage, UnitMessage, is_ros2_path};

/// How many messages some connections have and when the first and the last were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicSpan {
    pub(crate) count: usize,
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// Checks `listed`, the check of the index data after chunk `ci` against its chunk info, and
/// the chunk info against `found`, the messages per connection the chunk really holds: the
/// disagreement, if they disagree.
fn check_index_data(
    bag: &BagFile,
    chunk: &ChunkInfo,
    listed: Result<()>,
    found: &[(u32, u32)],
) -> Option<Error> {
    let result = listed.and_then(|()| {
        let mut declared = chunk.counts.clone();
        let mut found = found.to_vec();
        declared.retain(|&(_, n)| n > 0);
        declared.sort_unstable();
        found.sort_unstable();
        if declared == found {
            return Ok(());
        }
        Err(Error::IndexMismatch {
            path: bag.path().to_path_buf(),
            offset: chunk.pos,
            what: format!(
                "the chunk info and index data of the chunk at offset {} list messages {:?} \
                 (connection, count), the chunk holds {:?}",
                chunk.pos, declared, found
            ),
        })
    });
    match result {
        Err(e @ Error::IndexMismatch { .. }) => Some(e),
        // An unreadable stretch of the file: the chunk reader reports it when it matters.
        _ => None,
    }
}

/// An open recording of any supported format.
#[derive(Debug)]
pub enum Recording {
    Ros1 {
        bag: Box<BagFile>,
        index: Box<BagIndex>,
        note: Option<RecoveryNote>,
    },
    Ros2(Box<Ros2Bag>),
}

impl std::fmt::Debug for BagFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BagFile({})", self.path().display())
    }
}

/// One read unit's bytes and the messages in it.
pub struct Unit<'a> {
    data: UnitData<'a>,
    msgs: Vec<UnitMessage>,
    /// A malformed record ended the walk of the unit: the messages before it are kept.
    pub cut: Option<Error>,
    /// The index data after the chunk disagrees with it (checked on positioned reads): the
    /// messages come from the chunk either way; the caller reports it.
    pub(crate) index_mismatch: Option<Error>,
    /// Bytes read from storage for the unit (a ROS1 chunk read whole in the pass: its record
    /// header and index data too).
    pub(crate) stored_bytes: u64,
}

enum UnitData<'a> {
    Ros1(ChunkData<'a>),
    Owned(Vec<u8>),
}

/// One message payload of a unit.
#[derive(Debug, Clone, Copy)]
pub struct RawMsg<'a> {
    pub conn: u32,
    pub time_ns: u64,
    pub data: &'a [u8],
}

impl Unit<'_> {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            UnitData::Ros1(d) => d.bytes(),
            UnitData::Owned(v) => v,
        }
    }

    /// Messages in storage order.
    pub fn messages(&self) -> impl Iterator<Item = RawMsg<'_>> + '_ {
        let bytes = self.bytes();
        self.msgs.iter().filter_map(move |m| {
            Some(RawMsg {
                conn: m.conn,
                time_ns: m.time_ns,
                data: bytes.get(m.start..m.start.checked_add(m.len)?)?,
            })
        })
    }

    /// Message `k` in storage order.
    pub(crate) fn message(&self, k: usize) -> Option<RawMsg<'_>> {
        let m = self.msgs.get(k)?;
        Some(RawMsg {
            conn: m.conn,
            time_ns: m.time_ns,
            data: self.bytes().get(m.start..m.start.checked_add(m.len)?)?,
        })
    }
}

impl Recording {
    /// Opens `path` by its form: a directory with `metadata.yaml`, `.mcap`, `.db3` or
    /// `.db3.zstd` is a ROS 2 recording; anything else a ROS1 bag (recovered by a scan when
    /// its index is unusable).
    pub fn open(path: &Path) -> Result<Recording> {
        if is_ros2_path(path) {
            return Ok(Recording::Ros2(Box::new(Ros2Bag::open(path)?)));
        }
        let bag = BagFile::open(path)?;
        let (index, note) = BagIndex::open_checked(&bag)?;
        Ok(Recording::Ros1 {
            bag: Box::new(bag),
            index: Box::new(index),
            note,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Recording::Ros1 { bag, .. } => bag.path(),
            Recording::Ros2(r) => &r.path,
        }
    }

    pub fn index(&self) -> &BagIndex {
        match self {
            Recording::Ros1 { index, .. } => index,
            Recording::Ros2(r) => &r.index,
        }
    }

    /// `ros1`, `mcap`, `sqlite3` (a split bag of one storage), for reports.
    pub(crate) fn format(&self) -> &'static str {
        match self {
            Recording::Ros1 { .. } => "ros1",
            Recording::Ros2(r) => match r.files.first() {
                Some(Storage::Mcap(_)) => "mcap",
                _ => "sqlite3",
            },
        }
    }

    /// Why the recording was recovered by a scan instead of read from its index, if it was.
    pub fn recovery(&self) -> Option<String> {
        match self {
            Recording::Ros1 { note, .. } => note.as_ref().map(|n| n.to_string()),
            Recording::Ros2(r) => r.recovered.clone(),
        }
    }

    /// Heap bytes of what the open recording keeps (its index, and a recovered bag's list of
    /// messages): what keeping it open between its uses costs a run.
    pub(crate) fn heap_bytes(&self) -> u64 {
        match self {
            Recording::Ros1 { index, .. } => index.heap_bytes(),
            Recording::Ros2(r) => r.heap_bytes(),
        }
    }

    /// The recovery note of a ROS1 bag read by a scan.
    pub(crate) fn ros1_note(&self) -> Option<&RecoveryNote> {
        match self {
            Recording::Ros1 { note, .. } => note.as_ref(),
            Recording::Ros2(_) => None,
        }
    }

    /// Whether messages come in file order rather than from an index (a recovered bag).
    pub fn is_recovered(&self) -> bool {
        match self {
            Recording::Ros1 { index, .. } => index.is_recovered(),
            Recording::Ros2(r) => r.recovered.is_some(),
        }
    }

    /// The decode plan of connection `conn`, or why it has none.
    pub fn schema(&self, conn: u32) -> std::result::Result<MessageSchema, String> {
        match self {
            Recording::Ros1 { index, .. } => {
                let c = index
                    .connection(conn)
                    .ok_or_else(|| format!("unknown connection {conn}"))?;
                MessageSchema::parse(&c.msgtype, &c.definition).map_err(|e| e.what)
            }
            Recording::Ros2(r) => r.schema(conn),
        }
    }

    /// The [`Error::Definition`] of a connection without a decode plan.
    pub(crate) fn definition_error(&self, conn: u32, what: String) -> Error {
        let c = self.index().connection(conn);
        Error::Definition {
            path: self.path().to_path_buf(),
            topic: c.map(|c| c.topic.clone()).unwrap_or_default(),
            conn,
            msgtype: c.map(|c| c.msgtype.clone()).unwrap_or_default(),
            what,
        }
    }

    /// How many messages `conns` have (from the chunk infos, or the units' counts) and when
    /// the first and the last were recorded, reading no more than the index needs: for a ROS1
    /// bag, the index data of the chunks at the edges of the connections' time range (see
    /// [`BagIndex::edge_span`]). Index data that is missing or disagrees with its chunk info
    /// is replaced by the chunk's own messages (without a warning: the pass that converts the
    /// chunk reports it).
    /// `None` when no message of `conns` is listed.
    pub(crate) fn topic_span(&self, conns: &[u32]) -> Result<Option<TopicSpan>> {
        match self {
            Recording::Ros1 { bag, index, .. } => {
                let counts = index.counts_by_connection();
                let count: u64 = conns.iter().filter_map(|c| counts.get(c)).sum();
                let span = match index.topic_span(bag, conns) {
                    // Answered from the chunks; the conversion's pass, which reads them,
                    // reports the disagreement (once, in the bag's damage report).
                    Err(Error::IndexMismatch { .. }) => index.edge_span(conns, |ci| {
                        let chunk = index.headed(bag, ci)?;
                        let data = read_chunk_copied(bag, &chunk)?;
                        let mut times = Vec::new();
                        for m in messages(data.bytes()) {
                            let m = m.map_err(|e| chunk_error(bag, &chunk, e))?;
                            if conns.contains(&m.conn) {
                                times.push(m.time_ns);
                            }
                        }
                        Ok(times)
                    })?,
                    other => other?,
                };
                Ok(span.map(|(first, last)| TopicSpan {
                    count: count as usize,
                    first,
                    last,
                }))
            }
            Recording::Ros2(r) => {
                let times = r.topic_times(conns)?;
                Ok(times
                    .first()
                    .zip(times.last())
                    .map(|(&first, &last)| TopicSpan {
                        count: times.len(),
                        first,
                        last,
                    }))
            }
        }
    }

    /// Reads unit `ci` (an index into `index().chunks`): the messages of `wanted` connections
    /// (all when `None`). `copied` reads a ROS1 chunk with a positioned read instead of
    /// through the map (the converter's way; ROS 2 units are always read), and then takes the
    /// index data that follows the chunk in the file, checking it against the chunk info and
    /// the messages found: the check [`BagIndex::open_verified`] would make in a pass of its
    /// own, made as the chunks go by. A disagreement costs nothing (the messages come from
    /// the chunk) but is reported, once per bag.
    pub fn read_unit(&self, ci: usize, wanted: Option<&[u32]>, copied: bool) -> Result<Unit<'_>> {
        match self {
            Recording::Ros1 { bag, index, .. } => {
                let chunk = index.headed(bag, ci)?;
                let data = if copied {
                    read_chunk_copied(bag, &chunk)?
                } else {
                    read_chunk(bag, &chunk)?
                };
                let check = copied && !index.is_recovered();
                let listed = || index.index_data(bag, ci, &[], |_, _, _| {});
                let mut unit = ros1_unit(bag, &chunk, data, wanted, check.then(listed));
                unit.stored_bytes = chunk.data_len as u64;
                Ok(unit)
            }
            Recording::Ros2(r) => {
                let (data, msgs, cut) = r.read_unit(ci, wanted)?;
                Ok(Unit {
                    data: UnitData::Owned(data),
                    msgs,
                    cut,
                    index_mismatch: None,
                    stored_bytes: r.index.chunks[ci].data_len as u64,
                })
            }
        }
    }

    /// Bytes unit `ci` holds while [`Recording::read_unit_in_pass`] reads it, as far as the
    /// index tells before reading: a ROS1 chunk read whole (its index section gives where it
    /// and its index data end) holds its record, header, stored data and index data, and its
    /// decompressed copy once its header tells its size (counted here when the index holds the
    /// header; else the read takes it into its permit then).
    pub(crate) fn pass_need(&self, ci: usize) -> u64 {
        match self {
            Recording::Ros1 { index, .. } => {
                let c = &index.chunks[ci];
                let decompressed = if c.headed { heap_needed(c) } else { 0 };
                match index.span_end(ci) {
                    Some(end) => end - c.pos + decompressed,
                    None => c.data_len as u64 + decompressed,
                }
            }
            Recording::Ros2(r) => r.unit_need(ci),
        }
    }

    /// The unit of this recording with the largest [`Recording::pass_need`] once read: what a
    /// memory plan reserves for the one unit in flight, and the unit's index. For a ROS1 bag
    /// read from its index section, the stored size of every chunk is known from positions
    /// alone, but a decompressed size only from the chunk's header: when the first and the last
    /// chunk (in file order, whose headers the open read) are stored uncompressed, the bag is
    /// taken as stored uncompressed (rosbag writes a bag in one compression) and no other header
    /// is read; otherwise every header is read, in file order (one small read per chunk). A
    /// chunk that breaks the rule fails its conversion with an error naming it
    /// ([`Recording::read_unit_in_pass`]).
    pub fn largest_pass_need(&self) -> Result<Option<(u64, usize)>> {
        let n = self.index().chunks.len();
        let Recording::Ros1 { bag, index, .. } = self else {
            return Ok((0..n).map(|ci| (self.pass_need(ci), ci)).max());
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| index.chunks[i].pos);
        let mut stored_plain = true;
        for &ci in [order.first(), order.last()].into_iter().flatten() {
            stored_plain &= index.headed(bag, ci)?.compression == ChunkCompression::None;
        }
        let unknown = |ci: usize| !index.chunks[ci].headed && !stored_plain;
        for &ci in order.iter().filter(|&&ci| unknown(ci)) {
            bag.will_need(index.chunks[ci].pos, CHUNK_HEADER_READ as u64);
        }
        let mut largest: Option<(u64, usize)> = None;
        for ci in order {
            let mut need = self.pass_need(ci);
            if unknown(ci) {
                need += heap_needed(&*index.headed(bag, ci)?);
            }
            if largest.is_none_or(|(n, _)| need > n) {
                largest = Some((need, ci));
            }
        }
        Ok(largest)
    }

    /// Reads unit `ci` the converter's way, under `permit` (which holds
    /// [`Recording::pass_need`] bytes of the chunk budget): a ROS1 chunk is read whole, record
    /// header, data and index data in one positioned read, and when its header tells a
    /// decompressed size the permit did not count, the permit grows by it before the chunk is
    /// decompressed. Otherwise [`Recording::read_unit`] with positioned reads. Either way with
    /// `read_unit`'s index-data check.
    pub(crate) fn read_unit_in_pass(
        &self,
        ci: usize,
        wanted: Option<&[u32]>,
        permit: &mut Permit,
    ) -> Result<Unit<'_>> {
        let Some((bag, index, end)) = self.whole_span(ci) else {
            return self.read_unit(ci, wanted, true);
        };
        let known = &index.chunks[ci];
        let stored = StoredChunk::read(bag, known, end)?;
        let chunk = &stored.chunk;
        let counted = if known.headed { heap_needed(known) } else { 0 };
        let more = heap_needed(chunk).saturating_sub(counted);
        if permit.grow(more, String::new).is_err() {
            // Only a chunk whose header the plan did not read can outgrow it: a compressed
            // chunk in a bag whose edge chunks are stored uncompressed.
            return Err(Error::Limit {
                what: format!(
                    "{}: chunk {ci} at offset {} is {}-compressed ({} bytes stored, {} decompressed), \
                     but the bag's first and last chunks are stored uncompressed, so the memory \
                     plan took every chunk as stored uncompressed and has no room for its \
                     decompressed copy; convert a copy in one compression instead (`bag2dataset \
                     reindex --compression none -o COPY.bag {}`)",
                    bag.path().display(),
                    chunk.pos,
                    chunk.compression.name(),
                    chunk.data_len,
                    chunk.uncompressed_size,
                    bag.path().display()
                ),
            });
        }
        let listed = index.check_index_data_in(bag, ci, chunk, stored.after());
        let (chunk, data) = stored.into_data(bag)?;
        let mut unit = ros1_unit(bag, &chunk, data, wanted, Some(listed));
        unit.stored_bytes = end - chunk.pos;
        Ok(unit)
    }

    /// Asks the kernel to start reading, into the page cache, what
    /// [`Recording::read_unit_in_pass`] will read of unit `ci` (a ROS1 chunk's whole span), and
    /// returns its length in bytes; `None` when the recording is not read ahead (ROS 2, a
    /// recovered bag, a chunk whose span the index does not give). Nothing becomes resident
    /// in this process or counts against its budget. Read ahead this way, the span is cached
    /// in base pages; left to its own readahead, the kernel caches an uncached file in folios
    /// of up to 2 MiB, each a free block of that size, and on a VM that reports such blocks
    /// to its host (free page reporting) the first touch of each is slow: a cold 4 GB bag
    /// cost twice the system time (docs/benchmarks.md, "Cause and fix").
    pub(crate) fn prefetch_unit(&self, ci: usize) -> Option<u64> {
        let (bag, index, end) = self.whole_span(ci)?;
        let pos = index.chunks[ci].pos;
        bag.will_need(pos, end - pos);
        Some(end - pos)
    }

    /// For a ROS1 chunk the pass reads whole (its index section says where its index data
    /// ends; not a recovered bag): the bag, its index and that end.
    fn whole_span(&self, ci: usize) -> Option<(&BagFile, &BagIndex, u64)> {
        let Recording::Ros1 { bag, index, .. } = self else {
            return None;
        };
        let end = index.span_end(ci).filter(|_| !index.is_recovered())?;
        Some((bag, index, end))
    }

    /// Returns the pages of unit `ci` to the kernel (ROS1 maps the file; ROS 2 units are
    /// read, so there is nothing to release).
    pub(crate) fn release(&self, ci: usize) {
        if let Recording::Ros1 { bag, index, .. } = self
            && let Some(c) = index.chunks.get(ci)
        {
            let end = index.span_end(ci).unwrap_or(c.end()).max(c.end());
            bag.release(c.pos, end.saturating_sub(c.pos));
        }
    }

    /// The `conn` and `file` fields of a dump line: file-local ids for ROS 2 (the goldens'),
    /// with the storage file's index when the recording has more than one.
    pub(crate) fn conn_label(&self, conn: u32) -> (i64, Option<usize>) {
        match self {
            Recording::Ros1 { .. } => (conn as i64, None),
            Recording::Ros2(r) => match r.source(conn) {
                Some(s) => (s.local_id, (r.files.len() > 1).then_some(s.file)),
                None => (conn as i64, None),
            },
        }
    }
}

/// The messages of a ROS1 chunk's decompressed `data` (of `wanted` connections, all when
/// `None`), cut at a malformed record; with `listed` (the check of its index data, when the
/// read took it), the chunk info compared with what the chunk holds.
fn ros1_unit<'a>(
    bag: &BagFile,
    chunk: &ChunkInfo,
    data: ChunkData<'a>,
    wanted: Option<&[u32]>,
    listed: Option<Result<()>>,
) -> Unit<'a> {
    let bytes = data.bytes();
    let base = bytes.as_ptr() as usize;
    let mut msgs = Vec::new();
    let mut cut = None;
    let mut found: Vec<(u32, u32)> = Vec::new();
    for m in messages(bytes) {
        match m {
            Ok(m) => {
                match found.iter_mut().find(|(c, _)| *c == m.conn) {
                    Some(f) => f.1 += 1,
                    None => found.push((m.conn, 1)),
                }
                if wanted.is_none_or(|w| w.contains(&m.conn)) {
                    msgs.push(UnitMessage {
                        conn: m.conn,
                        time_ns: m.time_ns,
                        start: m.data.as_ptr() as usize - base,
                        len: m.data.len(),
                    });
                }
            }
            Err(e) => {
                cut = Some(chunk_error(bag, chunk, e));
                break;
            }
        }
    }
    let index_mismatch = listed
        .filter(|_| cut.is_none())
        .and_then(|listed| check_index_data(bag, chunk, listed, &found));
    Unit {
        data: UnitData::Ros1(data),
        msgs,
        cut,
        index_mismatch,
        stored_bytes: 0,
    }
}
