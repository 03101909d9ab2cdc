//! The time-range indexer: everything known about a bag from its index alone — connection
//! records, chunk-info records, each chunk's header, and (on request) the index-data records
//! after each chunk that list every message's time. It never decompresses a chunk.
//!
//! Memory: connections and chunk infos are kept (a few hundred bytes per chunk); message times
//! are only read for the connections asked for, 8 bytes per message ([`BagIndex::topic_times`])
//! or 24 bytes per message with positions ([`BagIndex::entries`]); pages of the map touched
//! while indexing are released right away.

use std::collections::HashMap;

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
    pub fn parse(v: &[u8]) -> Option<Self> {
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
    pub counts: Vec<(u32, u32)>,
    pub compression: ChunkCompression,
    /// Declared size of the decompressed data.
    pub uncompressed_size: u32,
    /// Offset and length of the (compressed) chunk data in the file.
    pub data_offset: u64,
    pub data_len: u32,
    /// The stored stream is longer than (or cut short of) what is kept: only the first
    /// `uncompressed_size` decompressed bytes, all complete records, are used.
    pub partial: bool,
    /// Loose records in the file (no chunk record of their own), found by a recovery scan.
    pub loose: bool,
}

impl ChunkInfo {
    pub fn message_count(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n as u64).sum()
    }

    pub fn holds_any(&self, conns: &[u32]) -> bool {
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
pub struct ScanEntry {
    pub time_ns: u64,
    pub conn: u32,
    /// Offset of the message data record inside the (decompressed) chunk data.
    pub offset: u32,
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
}

impl BagIndex {
    /// Reads the index section of an indexed bag and every chunk's header.
    pub fn read(bag: &BagFile) -> Result<BagIndex> {
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
        let bytes = bag.bytes();
        let mut connections = Vec::new();
        let mut chunks = Vec::new();
        // Like rosbag and rosbags, read exactly the declared number of connection and chunk-info
        // records; whatever follows them (e.g. loose records a reindex left behind) is not index.
        let (want_conns, want_chunks) = (header.conn_count as usize, header.chunk_count as usize);
        let mut at = header.index_pos as usize;
        while connections.len() < want_conns || chunks.len() < want_chunks {
            if at >= bytes.len() {
                return Err(Error::Malformed {
                    path: bag.path().to_path_buf(),
                    offset: at as u64,
                    what: format!(
                        "the index section ends after {} of {want_conns} connection records and {} of \
                         {want_chunks} chunk-info records the bag header declares",
                        connections.len(),
                        chunks.len()
                    ),
                });
            }
            let rec = Record::parse(bytes, at).map_err(|e| bag.malformed(e, "index section"))?;
            let fields = rec.fields();
            match fields.op().map_err(|e| bag.malformed(e, "index section"))? {
                op::CONNECTION if connections.len() < want_conns => {
                    connections.push(parse_connection(bag, &rec)?)
                }
                op::CHUNK_INFO if chunks.len() < want_chunks => {
                    chunks.push(parse_chunk_info(bag, &rec)?)
                }
                other => {
                    return Err(Error::Malformed {
                        path: bag.path().to_path_buf(),
                        offset: at as u64,
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
        bag.release(
            header.index_pos,
            (at as u64).saturating_sub(header.index_pos),
        );
        for chunk in &mut chunks {
            read_chunk_header(bag, chunk)?;
        }
        Ok(BagIndex {
            header,
            file_len: len,
            connections,
            chunks,
            scanned: None,
        })
    }

    /// Builds an index from parts found some other way (e.g. by a recovery scan).
    pub fn from_parts(
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
        }
    }

    /// Builds the index of a recovered bag: `scanned[i]` lists the messages of `chunks[i]` in
    /// file order and replaces its index-data records.
    pub fn from_scan(
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
        }
    }

    /// Whether this index was rebuilt by a recovery scan rather than read from the bag.
    pub fn is_recovered(&self) -> bool {
        self.scanned.is_some()
    }

    pub fn connection(&self, id: u32) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id == id)
    }

    /// Connection ids of `topic`, in index order.
    pub fn connections_of(&self, topic: &str) -> Vec<u32> {
        self.connections
            .iter()
            .filter(|c| c.topic == topic)
            .map(|c| c.id)
            .collect()
    }

    /// Topics in first-seen order.
    pub fn topics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.connections {
            if !out.contains(&c.topic.as_str()) {
                out.push(&c.topic);
            }
        }
        out
    }

    /// Message count per connection id, from the chunk infos.
    pub fn counts_by_connection(&self) -> HashMap<u32, u64> {
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
    pub fn chunks_for(&self, conns: &[u32], t0: u64, t1: u64) -> Vec<usize> {
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
    pub fn entries(&self, bag: &BagFile, conns: &[u32]) -> Result<Vec<IndexEntry>> {
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
    /// chunk in index order, releasing the pages read. For a recovered bag the entries come from
    /// the scan, in file order.
    pub fn visit_index_data(
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
        let bytes = bag.bytes();
        let limit = (self.header.index_pos as usize).min(bytes.len());
        let limit = if limit == 0 { bytes.len() } else { limit };
        let scope = &bytes[..limit];
        for (ci, chunk) in self.chunks.iter().enumerate() {
            if !chunk.holds_any(conns) {
                continue;
            }
            let mut at = chunk.end() as usize;
            let start = at;
            // Entries per connection in this chunk's index data, checked against its chunk info.
            let mut listed: Vec<(u32, u64)> = Vec::new();
            while at < scope.len() {
                let rec = Record::parse(scope, at)
                    .map_err(|e| bag.malformed(e, "index data after chunk"))?;
                let fields = rec.fields();
                if fields.op().map_err(|e| bag.malformed(e, "index data"))? != op::INDEX_DATA {
                    break;
                }
                let ctx = |e| bag.malformed(e, "index data record");
                let conn = fields.u32("conn").map_err(ctx)?;
                let count = fields.u32("count").map_err(ctx)? as usize;
                if count.checked_mul(12) != Some(rec.data.len()) {
                    return Err(Error::Malformed {
                        path: bag.path().to_path_buf(),
                        offset: rec.offset as u64,
                        what: format!(
                            "index data record declares {count} entries but holds {} bytes (expected 12 per entry)",
                            rec.data.len()
                        ),
                    });
                }
                match listed.iter_mut().find(|(c, _)| *c == conn) {
                    Some(l) => l.1 += count as u64,
                    None => listed.push((conn, count as u64)),
                }
                if conns.contains(&conn) {
                    for e in rec.data.chunks_exact(12) {
                        let sec = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
                        let nsec = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as u64;
                        let offset = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
                        f(ci, conn, sec * 1_000_000_000 + nsec, offset);
                    }
                }
                at = rec.end;
            }
            bag.release(start as u64, (at - start) as u64);
            for &(conn, declared) in chunk.counts.iter().filter(|(c, _)| conns.contains(c)) {
                let found = listed.iter().find(|(c, _)| *c == conn).map_or(0, |l| l.1);
                if found != u64::from(declared) {
                    return Err(Error::IndexMismatch {
                        path: bag.path().to_path_buf(),
                        offset: chunk.pos,
                        what: format!(
                            "the chunk info counts {declared} messages of connection {conn} in the \
                             chunk at offset {}, but the index data after it lists {found}",
                            chunk.pos
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn parse_connection(bag: &BagFile, rec: &Record<'_>) -> Result<Connection> {
    connection_from_record(rec).map_err(|e| bag.malformed(e, "connection record"))
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

fn parse_chunk_info(bag: &BagFile, rec: &Record<'_>) -> Result<ChunkInfo> {
    let ctx = |e| bag.malformed(e, "chunk info record");
    let fields = rec.fields();
    let ver = fields.u32("ver").map_err(ctx)?;
    if ver != 1 {
        return Err(Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: rec.offset as u64,
            what: format!("chunk info record version {ver} (only 1 is known)"),
        });
    }
    let pos = fields.u64("chunk_pos").map_err(ctx)?;
    let start_ns = fields.time("start_time").map_err(ctx)?;
    let end_ns = fields.time("end_time").map_err(ctx)?;
    let count = fields.u32("count").map_err(ctx)? as usize;
    if count.checked_mul(8) != Some(rec.data.len()) {
        return Err(Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: rec.offset as u64,
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

/// Reads the chunk record header at `chunk.pos` (compression, sizes), checking that the data is
/// inside the file.
fn read_chunk_header(bag: &BagFile, chunk: &mut ChunkInfo) -> Result<()> {
    let at = bag.offset_in_file(chunk.pos, "chunk")?;
    let bytes = bag.bytes();
    let (fields, data_at, data_len) =
        Record::parse_header(bytes, at).map_err(|e| bag.malformed(e, "chunk record"))?;
    let ctx = |e| bag.malformed(e, "chunk record");
    let op_code = fields.op().map_err(ctx)?;
    if op_code != op::CHUNK {
        return Err(Error::Malformed {
            path: bag.path().to_path_buf(),
            offset: chunk.pos,
            what: format!("chunk info points at a record with op {op_code:#04x}, not a chunk"),
        });
    }
    let compression = fields.get("compression").map_err(ctx)?.unwrap_or(b"none");
    chunk.compression = ChunkCompression::parse(compression).ok_or_else(|| Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: format!(
            "unknown chunk compression {:?}",
            String::from_utf8_lossy(compression)
        ),
    })?;
    chunk.uncompressed_size = fields.u32("size").map_err(ctx)?;
    chunk.data_offset = data_at as u64;
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
    bag.release(chunk.pos, (data_at - at) as u64);
    Ok(())
}
