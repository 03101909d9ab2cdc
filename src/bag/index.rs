//! The time-range indexer: everything known about a bag from its index alone — connection
//! records and chunk-info records (the index section at the end of the file, read in one
//! positioned read), each chunk's header (one small read per chunk), and, on request, the
//! index-data records after each chunk that list every message's time. It never decompresses
//! a chunk, and reads nothing through the map but an index section too large to read whole.
//!
//! Memory: connections and chunk infos are kept (a few hundred bytes per chunk); message times
//! are only read for the connections asked for, 8 bytes per message ([`BagIndex::topic_times`])
//! or 24 bytes per message with positions ([`BagIndex::entries`]), through a window of
//! [`INDEX_DATA_WINDOW`] bytes. [`BagIndex::topic_span`] reads only the edge chunks' index data.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::file::{BagFile, BagHeader};
use super::record::{Fields, Record, RecordError, op};
use crate::error::{Error, Result};

/// How a chunk's data is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkCompression {
    #[default]
    None,
    Bz2,
    Lz4,
    /// MCAP chunks and rosbag2 message compression (never in a ROS1 bag).
    Zstd,
}

impl ChunkCompression {
    pub(crate) fn parse(v: &[u8]) -> Option<Self> {
        match v {
            b"none" => Some(Self::None),
            b"bz2" => Some(Self::Bz2),
            b"lz4" => Some(Self::Lz4),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bz2 => "bz2",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Largest index section read into memory in one positioned read: 64 MiB (a 4 GB bag of
/// 768 KiB chunks has about 0.5 MiB of index). A larger one is parsed through the map.
const MAX_INDEX_SECTION_READ: u64 = 64 << 20;

/// Bytes read at each chunk record to get its header: 4 KiB (one page; rosbag's chunk
/// headers are about 60 bytes).
pub const CHUNK_HEADER_READ: usize = 4096;

/// Longest chunk record header believed: 1 MiB. A longer one is reported as malformed.
const MAX_CHUNK_HEADER_BYTES: u64 = 1 << 20;

/// A connection record: one publisher of one topic, with the full message definition.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u32,
    pub topic: String,
    pub msgtype: String,
    pub md5sum: String,
    pub definition: String,
    pub callerid: Option<String>,
    pub latching: bool,
}

/// A chunk-info record plus what the chunk's own header says.
///
/// A recovery scan ([`super::recover`]) also describes what it found as chunks: a cut chunk keeps
/// only its complete records (`partial`), and loose records after a placeholder chunk are a
/// chunk of compression `None` over their bytes in the file (`loose`).
#[derive(Debug, Clone, Default)]
pub struct ChunkInfo {
    /// Offset of the chunk record.
    pub pos: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Messages per connection id in this chunk.
    pub(crate) counts: Vec<(u32, u32)>,
    pub compression: ChunkCompression,
    /// Declared size of the decompressed data.
    pub uncompressed_size: u32,
    /// Offset and length of the (compressed) chunk data in the file.
    pub data_offset: u64,
    pub data_len: u32,
    /// The stored stream is longer than (or cut short of) what is kept: only the first
    /// `uncompressed_size` decompressed bytes, all complete records, are used.
    pub(crate) partial: bool,
    /// Loose records in the file (no chunk record of their own), found by a recovery scan.
    pub(crate) loose: bool,
    /// Whether `compression`, `uncompressed_size`, `data_offset` and `data_len` are known: the
    /// chunk record's header was read (or a scan described the chunk). An index read from the
    /// index section alone leaves them to be read with the chunk ([`BagIndex::headed`]); the
    /// converter takes them in its pass ([`super::chunk_reader::read_chunk_span`]).
    pub(crate) headed: bool,
}

impl ChunkInfo {
    pub fn message_count(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n as u64).sum()
    }

    pub(crate) fn holds_any(&self, conns: &[u32]) -> bool {
        self.counts.iter().any(|(c, n)| *n > 0 && conns.contains(c))
    }

    /// Offset just past the chunk record, where its index-data records start.
    pub fn end(&self) -> u64 {
        self.data_offset + self.data_len as u64
    }
}

/// One message as the index knows it: time, connection, and where to find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub time_ns: u64,
    pub conn: u32,
    /// Index into [`BagIndex::chunks`].
    pub chunk: u32,
    /// Offset of the message data record inside the decompressed chunk.
    pub offset: u32,
}

/// One message found by a recovery scan, standing in for the index-data records a recovered
/// chunk lacks: 16 bytes per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanEntry {
    pub(crate) time_ns: u64,
    pub(crate) conn: u32,
    /// Offset of the message data record inside the (decompressed) chunk data.
    pub(crate) offset: u32,
}

/// All the bag's index section holds, without message times.
#[derive(Debug, Clone)]
pub struct BagIndex {
    pub header: BagHeader,
    pub file_len: u64,
    /// Connections in index-section order (the order goldens break time ties by); in file order
    /// of their first record for a recovered bag.
    pub connections: Vec<Connection>,
    /// Chunks in index-section order (file order for bags written by rosbag).
    pub chunks: Vec<ChunkInfo>,
    /// For a recovered bag, the messages of each chunk in file order (16 bytes per message);
    /// `None` when the bag's own index-data records are read instead.
    scanned: Option<Vec<Vec<ScanEntry>>>,
    /// Per chunk, where the records that follow it (its index data) end: the next chunk
    /// record in file order, or the index section. Empty for an index built from parts.
    index_data_ends: Vec<u64>,
    /// The index data of the edge chunks (first and last in the file), read and checked once
    /// when the bag is opened ([`BagIndex::keep_index_data`], a few KiB) and lent to whoever
    /// reads it again (the timeline's time span starts and ends there).
    kept_index_data: Vec<(usize, Vec<u8>)>,
}

impl BagIndex {
    /// Reads the index section of an indexed bag and every chunk's header: one read of the
    /// index section at the end of the file, then one small read per chunk, in file order
    /// ([`BagIndex::read_chunk_headers`]).
    pub fn read(bag: &BagFile) -> Result<BagIndex> {
        let mut index = BagIndex::read_section(bag)?;
        index.read_chunk_headers(bag)?;
        Ok(index)
    }

    /// Reads only the index section (connection and chunk-info records), in one positioned
    /// read from `index_pos` to the end of the file (through the map when that is more than
    /// [`MAX_INDEX_SECTION_READ`]). Counts and time ranges are complete; what only the chunk
    /// records' headers say (compression, sizes, data offsets) is left unknown
    /// ([`ChunkInfo::headed`] false) until [`BagIndex::read_chunk_headers`], or
    /// [`BagIndex::headed`] for one chunk.
    pub(crate) fn read_section(bag: &BagFile) -> Result<BagIndex> {
        let header = bag.header();
        let len = bag.len();
        if header.index_pos == 0 {
            return Err(Error::Malformed {
                path: bag.path().to_path_buf(),
                offset: 0,
                what: "the bag has no index (index_pos = 0): its recording was not closed; \
                       repair it with `rosbag reindex`"
                    .into(),
            });
        }
        if header.index_pos < header.data_start || header.index_pos > len {
            return Err(Error::Malformed {
                path: bag.path().to_path_buf(),
                offset: 13,
                what: format!(
                    "bag header says the index starts at offset {} but the file has {len} bytes \
                     (truncated copy?)",
                    header.index_pos
                ),
            });
        }
        let base = header.index_pos;
        let section_len = len - base;
        let read;
        let bytes: &[u8] = if section_len <= MAX_INDEX_SECTION_READ {
            read = bag
                .read_exact_at(base, section_len as usize)
                .map_err(|e| Error::io(bag.path(), e))?;
            &read
        } else {
            bag.note_mapped_read(base, section_len);
            &bag.bytes()[base as usize..]
        };
        let in_section = |e: RecordError, what: &str| Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: base + e.offset as u64,
            what: format!("{what}: {}", e.what),
        };
        let mut connections = Vec::new();
        let mut chunks = Vec::new();
        // Like rosbag and rosbags, read exactly the declared number of connection and chunk-info
        // records; whatever follows them (e.g. loose records a reindex left behind) is not index.
        let (want_conns, want_chunks) = (header.conn_count as usize, header.chunk_count as usize);
        let mut at = 0usize;
        while connections.len() < want_conns || chunks.len() < want_chunks {
            if at >= bytes.len() {
                return Err(Error::Malformed {
                    path: bag.path().to_path_buf(),
                    offset: base + at as u64,
                    what: format!(
                        "the index section ends after {} of {want_conns} connection records and {} of \
                         {want_chunks} chunk-info records the bag header declares",
                        connections.len(),
                        chunks.len()
                    ),
                });
            }
            let rec = Record::parse(bytes, at).map_err(|e| in_section(e, "index section"))?;
            let fields = rec.fields();
            match fields.op().map_err(|e| in_section(e, "index section"))? {
                op::CONNECTION if connections.len() < want_conns => connections.push(
                    connection_from_record(&rec).map_err(|e| in_section(e, "connection record"))?,
                ),
                op::CHUNK_INFO if chunks.len() < want_chunks => chunks.push(
                    chunk_info_from_record(&rec).map_err(|e| in_section(e, "chunk info record"))?,
                ),
                other => {
                    return Err(Error::Malformed {
                        path: bag.path().to_path_buf(),
                        offset: base + at as u64,
                        what: format!(
                            "unexpected record op {other:#04x} in the index section (after {} connection \
                             and {} chunk-info records)",
                            connections.len(),
                            chunks.len()
                        ),
                    });
                }
            }
            at = rec.end;
        }
        if section_len > MAX_INDEX_SECTION_READ {
            bag.release(base, at as u64);
        }
        let index_data_ends = index_data_ends(&chunks, header.index_pos);
        Ok(BagIndex {
            header,
            file_len: len,
            connections,
            chunks,
            scanned: None,
            index_data_ends,
            kept_index_data: Vec::new(),
        })
    }

    /// Reads every chunk record's header (compression, decompressed size, where its data is):
    /// one positioned read of [`CHUNK_HEADER_READ`] bytes per chunk, in file order.
    ///
    /// The pages are asked for first, all at once (`madvise(WILLNEED)`, which starts their
    /// reads without mapping them into this process): the disk then serves them in parallel
    /// instead of one small read waiting for the last.
    fn read_chunk_headers(&mut self, bag: &BagFile) -> Result<()> {
        let mut order: Vec<usize> = (0..self.chunks.len()).collect();
        order.sort_by_key(|&i| self.chunks[i].pos);
        for &i in &order {
            bag.will_need(self.chunks[i].pos, CHUNK_HEADER_READ as u64);
        }
        for i in order {
            read_chunk_header(bag, &mut self.chunks[i])?;
        }
        Ok(())
    }

    /// Builds an index from parts found some other way (e.g. by a recovery scan).
    pub(crate) fn from_parts(
        header: BagHeader,
        file_len: u64,
        connections: Vec<Connection>,
        chunks: Vec<ChunkInfo>,
    ) -> Self {
        BagIndex {
            header,
            file_len,
            connections,
            chunks,
            scanned: None,
            index_data_ends: Vec::new(),
            kept_index_data: Vec::new(),
        }
    }

    /// Builds the index of a recovered bag: `scanned[i]` lists the messages of `chunks[i]` in
    /// file order and replaces its index-data records.
    pub(crate) fn from_scan(
        header: BagHeader,
        file_len: u64,
        connections: Vec<Connection>,
        chunks: Vec<ChunkInfo>,
        scanned: Vec<Vec<ScanEntry>>,
    ) -> Self {
        debug_assert_eq!(chunks.len(), scanned.len());
        BagIndex {
            header,
            file_len,
            connections,
            chunks,
            scanned: Some(scanned),
            index_data_ends: Vec::new(),
            kept_index_data: Vec::new(),
        }
    }

    /// Whether this index was rebuilt by a recovery scan rather than read from the bag.
    pub(crate) fn is_recovered(&self) -> bool {
        self.scanned.is_some()
    }

    /// Heap bytes this index holds (connections, chunk infos with their counts, and a
    /// recovered bag's 16 bytes per message): what keeping it costs a run.
    pub(crate) fn heap_bytes(&self) -> u64 {
        use std::mem::size_of;
        let connections: usize = self
            .connections
            .iter()
            .map(|c| {
                size_of::<Connection>()
                    + c.topic.len()
                    + c.msgtype.len()
                    + c.md5sum.len()
                    + c.definition.len()
                    + c.callerid.as_ref().map_or(0, String::len)
            })
            .sum();
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| size_of::<ChunkInfo>() + c.counts.capacity() * size_of::<(u32, u32)>())
            .sum();
        let scanned: usize = self.scanned.as_ref().map_or(0, |s| {
            s.iter()
                .map(|e| size_of::<Vec<ScanEntry>>() + e.capacity() * size_of::<ScanEntry>())
                .sum()
        });
        let kept: usize = self.kept_index_data.iter().map(|(_, b)| b.capacity()).sum();
        (connections + chunks + scanned + kept + self.index_data_ends.capacity() * size_of::<u64>())
            as u64
    }

    pub fn connection(&self, id: u32) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id == id)
    }

    /// Connection ids of `topic`, in index order.
    pub(crate) fn connections_of(&self, topic: &str) -> Vec<u32> {
        self.connections
            .iter()
            .filter(|c| c.topic == topic)
            .map(|c| c.id)
            .collect()
    }

    /// Topics in first-seen order.
    pub(crate) fn topics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.connections {
            if !out.contains(&c.topic.as_str()) {
                out.push(&c.topic);
            }
        }
        out
    }

    /// Message count per connection id, from the chunk infos.
    pub(crate) fn counts_by_connection(&self) -> HashMap<u32, u64> {
        let mut counts = HashMap::new();
        for chunk in &self.chunks {
            for &(c, n) in &chunk.counts {
                *counts.entry(c).or_insert(0) += n as u64;
            }
        }
        counts
    }

    pub fn message_count(&self) -> u64 {
        self.chunks.iter().map(ChunkInfo::message_count).sum()
    }

    /// Earliest and latest record time over all chunks, if there is any message.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let start = self
            .chunks
            .iter()
            .filter(|c| c.message_count() > 0)
            .map(|c| c.start_ns)
            .min()?;
        let end = self
            .chunks
            .iter()
            .filter(|c| c.message_count() > 0)
            .map(|c| c.end_ns)
            .max()?;
        Some((start, end))
    }

    /// Chunks (indices into `chunks`, in file order) holding messages of `conns` whose time
    /// range overlaps `[t0, t1]`.
    pub(crate) fn chunks_for(&self, conns: &[u32], t0: u64, t1: u64) -> Vec<usize> {
        let mut out: Vec<usize> = (0..self.chunks.len())
            .filter(|&i| {
                let c = &self.chunks[i];
                c.holds_any(conns) && c.start_ns <= t1 && c.end_ns >= t0
            })
            .collect();
        out.sort_by_key(|&i| self.chunks[i].pos);
        out
    }

    /// All record times of the messages of `conns`, sorted (8 bytes per message).
    pub fn topic_times(&self, bag: &BagFile, conns: &[u32]) -> Result<Vec<u64>> {
        let mut times = Vec::new();
        self.visit_index_data(bag, conns, |_, _, time, _| times.push(time))?;
        times.sort_unstable();
        Ok(times)
    }

    /// Every message of `conns` with its position, in index order.
    fn collect_entries(&self, bag: &BagFile, conns: &[u32]) -> Result<Vec<IndexEntry>> {
        let mut entries = Vec::new();
        self.visit_index_data(bag, conns, |chunk, conn, time_ns, offset| {
            entries.push(IndexEntry {
                time_ns,
                conn,
                chunk: chunk as u32,
                offset,
            })
        })?;
        Ok(entries)
    }

    /// Every message of `conns` with its position, ordered like the goldens: by record time,
    /// ties by connection order in the index section, then by index order.
    pub(crate) fn entries(&self, bag: &BagFile, conns: &[u32]) -> Result<Vec<IndexEntry>> {
        let mut entries = self.collect_entries(bag, conns)?;
        let rank: HashMap<u32, usize> = self
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        // Stable sort keeps chunk order then index order within a connection.
        entries.sort_by_key(|e| (e.time_ns, rank.get(&e.conn).copied().unwrap_or(usize::MAX)));
        Ok(entries)
    }

    /// Every message of `conns` with its position, in file order (chunk by chunk, then by
    /// offset in the chunk): the order a recovery scan finds them in.
    pub fn entries_in_file_order(&self, bag: &BagFile, conns: &[u32]) -> Result<Vec<IndexEntry>> {
        let mut entries = self.collect_entries(bag, conns)?;
        if !self.is_recovered() {
            let pos = |e: &IndexEntry| self.chunks[e.chunk as usize].pos;
            entries.sort_by_key(|e| (pos(e), e.offset));
        }
        Ok(entries)
    }

    /// Calls `f(chunk, conn, time_ns, offset)` for every index-data entry of `conns`, chunk by
    /// chunk in index order (one positioned read per chunk, see [`BagIndex::index_data`]).
    /// For a recovered bag the entries come from the scan, in file order.
    pub(crate) fn visit_index_data(
        &self,
        bag: &BagFile,
        conns: &[u32],
        mut f: impl FnMut(usize, u32, u64, u32),
    ) -> Result<()> {
        if let Some(scanned) = &self.scanned {
            for (ci, entries) in scanned.iter().enumerate() {
                for e in entries.iter().filter(|e| conns.contains(&e.conn)) {
                    f(ci, e.conn, e.time_ns, e.offset);
                }
            }
            return Ok(());
        }
        // As for the chunk headers: ask for every window at once, then read them in order.
        for (ci, chunk) in self.chunks.iter().enumerate() {
            if chunk.holds_any(conns) {
                let end = self.index_data_ends.get(ci).copied().unwrap_or(chunk.end());
                let len = end
                    .saturating_sub(chunk.end())
                    .min(INDEX_DATA_WINDOW as u64);
                bag.will_need(chunk.end(), len);
            }
        }
        for (ci, chunk) in self.chunks.iter().enumerate() {
            if !chunk.holds_any(conns) {
                continue;
            }
            self.index_data(bag, ci, conns, |conn, time_ns, offset| {
                f(ci, conn, time_ns, offset)
            })?;
        }
        Ok(())
    }

    /// Reads the index-data records after chunk `ci` and checks them against its chunk info:
    /// calls `f(conn, time_ns, offset)` for every entry of `conns` (none: only the check).
    /// Reads go through a window of [`INDEX_DATA_WINDOW`] bytes (one positioned read for the
    /// index data of a usual chunk); an entry list is read only for `conns`, and only after
    /// its count was found to match the chunk info, so a lying count allocates nothing.
    ///
    /// Missing, unreadable or disagreeing index data is an [`Error::IndexMismatch`] naming the
    /// chunk: the chunk itself still holds every message (read it by a scan instead).
    pub(crate) fn index_data(
        &self,
        bag: &BagFile,
        ci: usize,
        conns: &[u32],
        f: impl FnMut(u32, u64, u32),
    ) -> Result<()> {
        let chunk = self.headed(bag, ci)?;
        let window = match self.kept_index_data.iter().find(|(i, _)| *i == ci) {
            Some((_, bytes)) => Window {
                start: chunk.end(),
                buf: Cow::Borrowed(bytes),
            },
            None => Window::default(),
        };
        self.index_data_of(bag, ci, &chunk, conns, window, f)
    }

    /// Checks the index data of chunk `ci` (as [`Self::index_data`] does) and keeps its bytes
    /// for later readers, when the index section says where it ends and it is at most
    /// [`INDEX_DATA_WINDOW`] long (else it is only checked).
    pub(crate) fn keep_index_data(&mut self, bag: &BagFile, ci: usize) -> Result<()> {
        let chunk = self.headed(bag, ci)?.into_owned();
        let start = chunk.end();
        let bytes = self
            .span_end(ci)
            .filter(|&end| end >= start && end - start <= INDEX_DATA_WINDOW as u64)
            .and_then(|end| bag.read_exact_at(start, (end - start) as usize).ok());
        let Some(bytes) = bytes else {
            // Unknown or long, or unreadable: checked (and any damage named) the usual way.
            return self.index_data(bag, ci, &[], |_, _, _| {});
        };
        self.check_index_data_in(bag, ci, &chunk, &bytes)?;
        self.kept_index_data.push((ci, bytes));
        Ok(())
    }

    /// Chunk `ci` with its header fields known: as the index holds it, or, for an index read
    /// without them, with its record header read now (one small positioned read).
    pub(crate) fn headed(&self, bag: &BagFile, ci: usize) -> Result<Cow<'_, ChunkInfo>> {
        let chunk = self
            .chunks
            .get(ci)
            .ok_or_else(|| Error::Internal(format!("no chunk {ci}")))?;
        if chunk.headed {
            return Ok(Cow::Borrowed(chunk));
        }
        let mut chunk = chunk.clone();
        read_chunk_header(bag, &mut chunk)?;
        Ok(Cow::Owned(chunk))
    }

    /// Where the records that follow chunk `ci` (its index data) end, when the index section
    /// says (the next chunk record in file order, or the index section itself): the chunk's
    /// header, data and index data all lie in `[pos, that)`, known without reading a header.
    pub fn span_end(&self, ci: usize) -> Option<u64> {
        self.index_data_ends
            .get(ci)
            .copied()
            .filter(|&end| end != u64::MAX && end > self.chunks[ci].pos)
    }

    /// [`Self::index_data`] checked on index data already read: `bytes` are the bytes from the
    /// end of `chunk`'s data (whose header fields must be known) to [`Self::span_end`].
    pub(crate) fn check_index_data_in(
        &self,
        bag: &BagFile,
        ci: usize,
        chunk: &ChunkInfo,
        bytes: &[u8],
    ) -> Result<()> {
        let window = Window {
            start: chunk.end(),
            buf: Cow::Borrowed(bytes),
        };
        self.index_data_of(bag, ci, chunk, &[], window, |_, _, _| {})
    }

    /// [`Self::index_data`] of chunk `ci` as described by `chunk` (whose header fields, the end
    /// of its data, must be known), read through `window` (which may already hold it).
    fn index_data_of(
        &self,
        bag: &BagFile,
        ci: usize,
        chunk: &ChunkInfo,
        conns: &[u32],
        mut window: Window<'_>,
        mut f: impl FnMut(u32, u64, u32),
    ) -> Result<()> {
        let end = self
            .index_data_ends
            .get(ci)
            .copied()
            .unwrap_or(self.header.index_pos)
            .min(bag.len());
        let mismatch = |offset: u64, what: String| Error::IndexMismatch {
            path: bag.path().to_path_buf(),
            offset,
            what: format!("index data of the chunk at offset {}: {what}", chunk.pos),
        };
        let declared = |conn: u32| {
            chunk
                .counts
                .iter()
                .find(|(c, _)| *c == conn)
                .map_or(0, |&(_, n)| u64::from(n))
        };
        let mut listed: Vec<(u32, u64)> = Vec::new();
        let mut at = chunk.end();
        while at < end {
            let cut = |what: &str| mismatch(at, format!("the record at offset {at} is {what}"));
            let Some(prefix) = window.slice(bag, at, 4, end)? else {
                return Err(cut("cut short"));
            };
            let header_len =
                u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as u64;
            if header_len > MAX_CHUNK_HEADER_BYTES {
                return Err(cut("not a record (header length out of range)"));
            }
            let Some(head) = window.slice(bag, at, 8 + header_len as usize, end)? else {
                return Err(cut("cut short"));
            };
            let fields = Fields::new(&head[4..4 + header_len as usize], 0);
            let unreadable =
                |e: RecordError| mismatch(at, format!("the record at offset {at}: {}", e.what));
            if fields.op().map_err(unreadable)? != op::INDEX_DATA {
                break;
            }
            let l = &head[4 + header_len as usize..];
            let data_len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as u64;
            let conn = fields.u32("conn").map_err(unreadable)?;
            let count = u64::from(fields.u32("count").map_err(unreadable)?);
            if count * 12 != data_len {
                return Err(mismatch(
                    at,
                    format!(
                        "the record at offset {at} declares {count} entries but holds {data_len} \
                         bytes (expected 12 per entry)"
                    ),
                ));
            }
            let so_far = match listed.iter_mut().find(|(c, _)| *c == conn) {
                Some(l) => {
                    l.1 += count;
                    l.1
                }
                None => {
                    listed.push((conn, count));
                    count
                }
            };
            let data_at = at + 8 + header_len;
            if so_far > declared(conn) {
                return Err(mismatch(
                    at,
                    format!(
                        "it lists {so_far} messages of connection {conn}, the chunk info counts {}",
                        declared(conn)
                    ),
                ));
            }
            if conns.contains(&conn) {
                let Some(data) = window.slice(bag, data_at, data_len as usize, end)? else {
                    return Err(cut("cut short"));
                };
                for e in data.chunks_exact(12) {
                    let sec = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
                    let nsec = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as u64;
                    let offset = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
                    f(conn, sec * 1_000_000_000 + nsec, offset);
                }
            }
            at = data_at + data_len;
        }
        for &(conn, n) in &chunk.counts {
            let found = listed.iter().find(|(c, _)| *c == conn).map_or(0, |l| l.1);
            if found != u64::from(n) {
                return Err(mismatch(
                    chunk.pos,
                    format!(
                        "the chunk info counts {n} messages of connection {conn}, but the index \
                         data after the chunk lists {found}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`Self::topic_span`] on an index read by [`Self::read_section`] alone (no header sweep):
    /// the header and index data of each edge chunk are read when first needed and kept in
    /// `read` (chunk → its (connection, time) entries), so topics sharing an edge chunk read it
    /// once. What `info` uses for exact first and last times without touching the rest.
    pub(crate) fn topic_span_from_section(
        &self,
        bag: &BagFile,
        conns: &[u32],
        read: &mut BTreeMap<usize, Vec<(u32, u64)>>,
    ) -> Result<Option<(u64, u64)>> {
        self.edge_span(conns, |ci| {
            if let std::collections::btree_map::Entry::Vacant(slot) = read.entry(ci) {
                let chunk = self.headed(bag, ci)?;
                let all: Vec<u32> = chunk.counts.iter().map(|&(c, _)| c).collect();
                let mut entries = Vec::new();
                self.index_data_of(bag, ci, &chunk, &all, Window::default(), |c, t, _| {
                    entries.push((c, t))
                })?;
                slot.insert(entries);
            }
            Ok(read[&ci]
                .iter()
                .filter(|(c, _)| conns.contains(c))
                .map(|&(_, t)| t)
                .collect())
        })
    }

    /// First and last record time of the messages of `conns`, reading only the index data of
    /// the chunks at the edges (see [`BagIndex::edge_span`]); `None` when no chunk holds one.
    /// A recovered bag answers from its scan.
    pub(crate) fn topic_span(&self, bag: &BagFile, conns: &[u32]) -> Result<Option<(u64, u64)>> {
        self.edge_span(conns, |ci| {
            let mut times = Vec::new();
            match &self.scanned {
                Some(scanned) => times.extend(
                    scanned
                        .get(ci)
                        .into_iter()
                        .flatten()
                        .filter(|e| conns.contains(&e.conn))
                        .map(|e| e.time_ns),
                ),
                None => self.index_data(bag, ci, conns, |_, t, _| times.push(t))?,
            }
            Ok(times)
        })
    }

    /// First and last time of `conns` from the times of a few chunks: `times_of(ci)` gives the
    /// times of `conns` in chunk `ci`. Chunks are visited by start time (then by end time,
    /// backwards) only until no later one can hold an earlier time (a later one), since a
    /// chunk's messages lie inside its chunk-info range: usually one chunk at each end.
    pub(crate) fn edge_span(
        &self,
        conns: &[u32],
        mut times_of: impl FnMut(usize) -> Result<Vec<u64>>,
    ) -> Result<Option<(u64, u64)>> {
        let mut holding: Vec<usize> = (0..self.chunks.len())
            .filter(|&i| self.chunks[i].holds_any(conns))
            .collect();
        holding.sort_by_key(|&i| (self.chunks[i].start_ns, self.chunks[i].pos));
        let mut first: Option<u64> = None;
        for &ci in &holding {
            if first.is_some_and(|f| self.chunks[ci].start_ns > f) {
                break;
            }
            if let Some(t) = times_of(ci)?.into_iter().min() {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        holding.sort_by_key(|&i| std::cmp::Reverse((self.chunks[i].end_ns, self.chunks[i].pos)));
        let mut last: Option<u64> = None;
        for &ci in &holding {
            if last.is_some_and(|l| self.chunks[ci].end_ns < l) {
                break;
            }
            if let Some(t) = times_of(ci)?.into_iter().max() {
                last = Some(last.map_or(t, |l| l.max(t)));
            }
        }
        Ok(first.zip(last))
    }
}

/// Per chunk, where the records after it end: the next chunk record in file order, or
/// `index_pos` (the file's end when the index is not after the chunk).
fn index_data_ends(chunks: &[ChunkInfo], index_pos: u64) -> Vec<u64> {
    let mut starts: Vec<u64> = chunks.iter().map(|c| c.pos).collect();
    starts.sort_unstable();
    chunks
        .iter()
        .map(|c| {
            let next = starts.partition_point(|&p| p <= c.pos);
            match starts.get(next) {
                Some(&p) => p.min(if index_pos > c.pos {
                    index_pos
                } else {
                    u64::MAX
                }),
                None if index_pos > c.pos => index_pos,
                None => u64::MAX,
            }
        })
        .collect()
}

/// Bytes read at a time from the index data after a chunk: 64 KiB (a 768 KiB chunk of
/// 30 Hz cameras and a 500 Hz joint topic lists about 1,000 messages, 12 KiB).
const INDEX_DATA_WINDOW: usize = 64 << 10;

/// A buffer over part of the file, refilled by positioned reads (or lent bytes already read).
#[derive(Default)]
struct Window<'a> {
    start: u64,
    buf: Cow<'a, [u8]>,
}

impl Window<'_> {
    /// `[at, at + len)`, reading from `at` when it is not buffered; `None` when it runs past
    /// `end`.
    fn slice(&mut self, bag: &BagFile, at: u64, len: usize, end: u64) -> Result<Option<&[u8]>> {
        if at.saturating_add(len as u64) > end {
            return Ok(None);
        }
        let have = at >= self.start && at + len as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let want = (end - at).min(len.max(INDEX_DATA_WINDOW) as u64) as usize;
            self.buf = Cow::Owned(
                bag.read_exact_at(at, want)
                    .map_err(|e| Error::io(bag.path(), e))?,
            );
            self.start = at;
        }
        let from = (at - self.start) as usize;
        Ok(Some(&self.buf[from..from + len]))
    }
}

/// Reads a connection record; error offsets are relative to the slice `rec` was parsed from.
pub(crate) fn connection_from_record(rec: &Record<'_>) -> Result<Connection, RecordError> {
    let fields = rec.fields();
    let id = fields.u32("conn")?;
    let topic = fields.string("topic")?;
    let data = Fields::new(rec.data, rec.offset + 8 + rec.header.len());
    let msgtype = data.string("type")?;
    let md5sum = data.string("md5sum")?;
    let definition = data.get("message_definition")?;
    let definition = String::from_utf8_lossy(definition.unwrap_or_default()).into_owned();
    let callerid = data
        .get("callerid")?
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let latching = matches!(data.get("latching")?, Some(b"1"));
    Ok(Connection {
        id,
        topic,
        msgtype,
        md5sum,
        definition,
        callerid,
        latching,
    })
}

/// Reads a chunk-info record; error offsets are relative to the slice `rec` was parsed from.
fn chunk_info_from_record(rec: &Record<'_>) -> Result<ChunkInfo, RecordError> {
    let fields = rec.fields();
    let ver = fields.u32("ver")?;
    if ver != 1 {
        return Err(RecordError {
            offset: rec.offset,
            what: format!("chunk info record version {ver} (only 1 is known)"),
        });
    }
    let pos = fields.u64("chunk_pos")?;
    let start_ns = fields.time("start_time")?;
    let end_ns = fields.time("end_time")?;
    let count = fields.u32("count")? as usize;
    if count.checked_mul(8) != Some(rec.data.len()) {
        return Err(RecordError {
            offset: rec.offset,
            what: format!(
                "chunk info declares {count} connections but holds {} bytes (expected 8 per connection)",
                rec.data.len()
            ),
        });
    }
    let counts = rec
        .data
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    Ok(ChunkInfo {
        pos,
        start_ns,
        end_ns,
        counts,
        ..ChunkInfo::default()
    })
}

/// Reads the chunk record header at `chunk.pos` (compression, sizes) with one positioned read
/// of [`CHUNK_HEADER_READ`] bytes (two when the header is longer), checking that the data is
/// inside the file.
fn read_chunk_header(bag: &BagFile, chunk: &mut ChunkInfo) -> Result<()> {
    bag.offset_in_file(chunk.pos, "chunk")?;
    let io = |e| Error::io(bag.path(), e);
    let mut head = bag.read_up_to(chunk.pos, CHUNK_HEADER_READ).map_err(io)?;
    let header_len = head
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let need = header_len + 8;
    if need > head.len() as u64 && need <= MAX_CHUNK_HEADER_BYTES {
        head = bag.read_up_to(chunk.pos, need as usize).map_err(io)?;
    }
    apply_chunk_header(bag, &head, chunk)
}

/// Fills in `chunk`'s header fields from `head`, the bytes of the file from `chunk.pos` on
/// (the whole record header, and the data length after it), checking that the data is inside
/// the file.
pub(crate) fn apply_chunk_header(bag: &BagFile, head: &[u8], chunk: &mut ChunkInfo) -> Result<()> {
    let at_chunk = |e: RecordError| Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos + e.offset as u64,
        what: format!("chunk record: {}", e.what),
    };
    let (fields, data_at, data_len) = Record::parse_header(head, 0).map_err(at_chunk)?;
    let op_code = fields.op().map_err(at_chunk)?;
    if op_code != op::CHUNK {
        return Err(Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: chunk.pos,
            what: format!("chunk info points at a record with op {op_code:#04x}, not a chunk"),
        });
    }
    let compression = fields
        .get("compression")
        .map_err(at_chunk)?
        .unwrap_or(b"none");
    chunk.compression = ChunkCompression::parse(compression).ok_or_else(|| Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: format!(
            "unknown chunk compression {:?}",
            String::from_utf8_lossy(compression)
        ),
    })?;
    chunk.uncompressed_size = fields.u32("size").map_err(at_chunk)?;
    chunk.data_offset = chunk.pos + data_at as u64;
    chunk.data_len = data_len;
    if chunk.end() > bag.len() {
        return Err(Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: chunk.pos,
            what: format!(
                "chunk data of {data_len} bytes runs past the end of the file ({} bytes)",
                bag.len()
            ),
        });
    }
    chunk.headed = true;
    Ok(())
}
