//! A ROS bag 2.0 writer that lays records out the way `rosbag record` does, for test fixtures built
//! in memory and for the demo bag.
//!
//! Layout written: the `#ROSBAG V2.0\n` magic; the bag header record padded to
//! [`BAG_HEADER_LEN`] bytes; chunk records, each followed by one index-data record (version 1) per
//! connection that has messages in it; then the index section at `index_pos`: every connection
//! record, then one chunk-info record (version 1) per chunk. The bag header is written with zeros
//! first and rewritten by [`BagWriter::finish`], exactly like a live recording, so
//! [`BagWriter::finish_unindexed`] and [`BagWriter::finish_interrupted`] produce the damaged bags a
//! killed recorder leaves behind.
//!
//! Record header fields are written in the order of the C++ recorder (`std::map`, i.e. sorted by
//! name). Connection records are stored inside a chunk the first time the connection is used in the
//! bag (like `rosbag`), or in every chunk that uses it with [`ConnectionRecords::EveryChunk`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// The format line every bag 2.0 file starts with.
use super::record::MAGIC;

/// Bytes of the bag header record's header plus its space padding (the two `u32` length prefixes
/// excluded), as in `rosbag`: the first record after the bag header starts at offset 4117.
const BAG_HEADER_LEN: usize = 4096;

/// Default chunk threshold in bytes of uncompressed chunk data: 768 KiB, rosbag's default.
const DEFAULT_CHUNK_THRESHOLD: usize = 768 * 1024;

use super::record::op;

/// How the writer compresses chunks: the three a ROS1 bag can hold (the reader's
/// `index::ChunkCompression` also names MCAP's zstd, which a bag writer never writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Bz2,
    Lz4,
}

impl Compression {
    /// The value of the chunk record's `compression` field.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Bz2 => "bz2",
            Compression::Lz4 => "lz4",
        }
    }

    /// Compresses one chunk's data: bz2 at level 9 like rosbag; lz4 as an LZ4 frame like
    /// `roslz4` writes (independent 1 MiB blocks, content checksum).
    pub(crate) fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Bz2 => {
                let mut enc = bzip2::write::BzEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    bzip2::Compression::best(),
                );
                enc.write_all(data)?;
                enc.finish()
            }
            Compression::Lz4 => {
                let mut enc = lz4::EncoderBuilder::new()
                    .block_size(lz4::BlockSize::Max1MB)
                    .block_mode(lz4::BlockMode::Independent)
                    .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                    .checksum(lz4::ContentChecksum::ChecksumEnabled)
                    .build(Vec::with_capacity(data.len() / 2))?;
                enc.write_all(data)?;
                let (out, result) = enc.finish();
                result.map(|()| out)
            }
        }
    }
}

/// Where connection records go in the chunk section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionRecords {
    /// Once, in the chunk where the connection is first used (what `rosbag` does).
    #[default]
    FirstUse,
    /// In every chunk that holds a message of the connection (each chunk is self-describing).
    EveryChunk,
}

/// How a [`BagWriter`] lays out chunks.
#[derive(Debug, Clone)]
pub struct BagWriterOptions {
    /// Chunk compression; default none.
    pub compression: Compression,
    /// A chunk is closed once its uncompressed data exceeds this many bytes; default
    /// [`DEFAULT_CHUNK_THRESHOLD`] (768 KiB). `0` gives one message per chunk.
    pub chunk_threshold: usize,
    /// Where connection records are stored in the chunk section; default like rosbag.
    pub connection_records: ConnectionRecords,
}

impl Default for BagWriterOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            chunk_threshold: DEFAULT_CHUNK_THRESHOLD,
            connection_records: ConnectionRecords::FirstUse,
        }
    }
}

impl BagWriterOptions {
    /// Default options with the given compression.
    pub fn with_compression(compression: Compression) -> Self {
        Self {
            compression,
            ..Self::default()
        }
    }
}

/// Everything a connection record says about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Topic name.
    topic: String,
    /// Message type, e.g. `sensor_msgs/JointState`.
    msgtype: String,
    /// MD5 sum of the message type, 32 lowercase hex digits.
    md5sum: String,
    /// Full message definition text, dependencies included.
    definition: String,
    /// Publishing node; the `callerid` field is written only when set.
    callerid: Option<String>,
    /// Latching publisher; the `latching` field (`0`/`1`) is written only when set.
    latching: Option<bool>,
}

impl ConnectionInfo {
    /// A connection without `callerid` and `latching` fields.
    pub fn new(topic: &str, msgtype: &str, md5sum: &str, definition: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            msgtype: msgtype.to_owned(),
            md5sum: md5sum.to_owned(),
            definition: definition.to_owned(),
            callerid: None,
            latching: None,
        }
    }

    /// Sets the `callerid` field.
    pub fn callerid(mut self, callerid: &str) -> Self {
        self.callerid = Some(callerid.to_owned());
        self
    }

    /// Sets the `latching` field.
    pub fn latching(mut self, latching: bool) -> Self {
        self.latching = Some(latching);
        self
    }

    /// The connection header block stored as the connection record's data (fields sorted by name,
    /// as the C++ recorder stores them).
    fn encode_fields(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(callerid) = &self.callerid {
            put_field(&mut out, "callerid", callerid.as_bytes());
        }
        if let Some(latching) = self.latching {
            put_field(&mut out, "latching", if latching { b"1" } else { b"0" });
        }
        put_field(&mut out, "md5sum", self.md5sum.as_bytes());
        put_field(&mut out, "message_definition", self.definition.as_bytes());
        put_field(&mut out, "topic", self.topic.as_bytes());
        put_field(&mut out, "type", self.msgtype.as_bytes());
        out
    }
}

/// A connection as written: its id, topic and encoded connection header.
struct Conn {
    topic: String,
    fields: Vec<u8>,
    /// Whether a connection record for it has been stored in the chunk section yet.
    recorded: bool,
}

/// The chunk being filled, uncompressed.
#[derive(Default)]
struct OpenChunk {
    data: Vec<u8>,
    start_ns: u64,
    end_ns: u64,
    /// Per connection: (time, offset of the message record in `data`), in arrival order.
    index: BTreeMap<u32, Vec<(u64, u32)>>,
    /// Connections whose record is already in this chunk.
    conns_in_chunk: Vec<u32>,
}

/// What the index section says about one written chunk.
struct WrittenChunk {
    pos: u64,
    start_ns: u64,
    end_ns: u64,
    counts: Vec<(u32, u32)>,
}

/// Writes a ROS bag 2.0 file the way `rosbag record` lays it out (see the module docs).
///
/// Dropping the writer without calling a `finish*` method leaves an unfinished bag behind
/// (header with `index_pos` 0, the open chunk lost).
pub struct BagWriter<W: Write + Seek> {
    inner: W,
    opts: BagWriterOptions,
    /// Stream position of the magic; record offsets are relative to it.
    base: u64,
    /// Current offset relative to `base`.
    pos: u64,
    conns: Vec<Conn>,
    chunk: Option<OpenChunk>,
    chunks: Vec<WrittenChunk>,
    messages: u64,
}

impl BagWriter<BufWriter<File>> {
    /// Creates (truncates) a bag file at `path`.
    pub fn create(path: &Path, opts: BagWriterOptions) -> io::Result<Self> {
        Self::new(BufWriter::new(File::create(path)?), opts)
    }
}

impl<W: Write + Seek> BagWriter<W> {
    /// Starts a bag at the current position of `inner` (e.g. a `Cursor<Vec<u8>>` for in-memory
    /// bags): writes the magic and a bag header saying "no index yet".
    pub fn new(mut inner: W, opts: BagWriterOptions) -> io::Result<Self> {
        let base = inner.stream_position()?;
        let mut w = Self {
            inner,
            opts,
            base,
            pos: 0,
            conns: Vec::new(),
            chunk: None,
            chunks: Vec::new(),
            messages: 0,
        };
        w.put(MAGIC)?;
        let header = bag_header(0, 0, 0);
        w.put(&header)?;
        Ok(w)
    }

    /// Declares a connection without `callerid`/`latching` fields; returns its id (0, 1, ...).
    pub fn add_connection(
        &mut self,
        topic: &str,
        msgtype: &str,
        md5sum: &str,
        definition: &str,
    ) -> io::Result<u32> {
        self.add_connection_info(&ConnectionInfo::new(topic, msgtype, md5sum, definition))
    }

    /// Declares a connection with every field of `info`; returns its id (0, 1, ...).
    pub fn add_connection_info(&mut self, info: &ConnectionInfo) -> io::Result<u32> {
        let id = u32::try_from(self.conns.len())
            .map_err(|_| invalid_input("more than u32::MAX connections".to_owned()))?;
        self.conns.push(Conn {
            topic: info.topic.clone(),
            fields: info.encode_fields(),
            recorded: false,
        });
        Ok(id)
    }

    /// Appends one message on connection `conn` with record time `time_ns` (nanoseconds since the
    /// epoch; must fit `u32` seconds). Closes the chunk once it exceeds the chunk threshold.
    pub fn write(&mut self, conn: u32, time_ns: u64, payload: &[u8]) -> io::Result<()> {
        let time = encode_time(time_ns)?;
        let every_chunk = self.opts.connection_records == ConnectionRecords::EveryChunk;
        let c = self
            .conns
            .get_mut(conn as usize)
            .ok_or_else(|| invalid_input(format!("unknown connection {conn}")))?;
        let chunk = self.chunk.get_or_insert_with(|| OpenChunk {
            start_ns: time_ns,
            end_ns: time_ns,
            ..OpenChunk::default()
        });
        let need_record = if every_chunk {
            !chunk.conns_in_chunk.contains(&conn)
        } else {
            !c.recorded
        };
        if need_record {
            connection_record(&mut chunk.data, conn, &c.topic, &c.fields);
            chunk.conns_in_chunk.push(conn);
            c.recorded = true;
        }
        let offset = u32::try_from(chunk.data.len())
            .map_err(|_| invalid_input("chunk larger than 4 GiB".to_owned()))?;
        let mut header = Vec::with_capacity(32);
        put_field(&mut header, "conn", &conn.to_le_bytes());
        put_field(&mut header, "op", &[op::MESSAGE_DATA]);
        put_field(&mut header, "time", &time);
        put_record(&mut chunk.data, &header, payload)?;
        chunk.index.entry(conn).or_default().push((time_ns, offset));
        chunk.start_ns = chunk.start_ns.min(time_ns);
        chunk.end_ns = chunk.end_ns.max(time_ns);
        self.messages += 1;
        if chunk.data.len() > self.opts.chunk_threshold {
            self.close_chunk()?;
        }
        Ok(())
    }

    /// Sets the compression of the chunks written from now on (the current chunk is written
    /// first), as rosbag's `Bag.compression` may change while recording: a bag of mixed
    /// chunk compressions.
    pub fn set_compression(&mut self, compression: Compression) -> io::Result<()> {
        self.flush_chunk()?;
        self.opts.compression = compression;
        Ok(())
    }

    /// Messages written so far.
    pub(crate) fn message_count(&self) -> u64 {
        self.messages
    }

    /// Chunks closed so far (the open chunk not counted).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Closes the open chunk now, whatever its size (no-op without one).
    pub fn flush_chunk(&mut self) -> io::Result<()> {
        self.close_chunk()
    }

    /// Closes the last chunk, writes the index section (all connection records, then one chunk
    /// info per chunk) and rewrites the bag header with `index_pos`, `conn_count`, `chunk_count`.
    /// Returns the inner writer, positioned at the end of the bag.
    pub fn finish(mut self) -> io::Result<W> {
        self.close_chunk()?;
        let index_pos = self.pos;
        let mut buf = Vec::new();
        for (id, c) in self.conns.iter().enumerate() {
            // `add_connection_info` keeps ids within u32.
            connection_record(&mut buf, id as u32, &c.topic, &c.fields);
        }
        for info in &self.chunks {
            let mut header = Vec::with_capacity(96);
            put_field(&mut header, "chunk_pos", &info.pos.to_le_bytes());
            put_field(
                &mut header,
                "count",
                &len_u32(info.counts.len())?.to_le_bytes(),
            );
            put_field(&mut header, "end_time", &encode_time(info.end_ns)?);
            put_field(&mut header, "op", &[op::CHUNK_INFO]);
            put_field(&mut header, "start_time", &encode_time(info.start_ns)?);
            put_field(&mut header, "ver", &1u32.to_le_bytes());
            let mut data = Vec::with_capacity(info.counts.len() * 8);
            for (conn, count) in &info.counts {
                data.extend_from_slice(&conn.to_le_bytes());
                data.extend_from_slice(&count.to_le_bytes());
            }
            put_record(&mut buf, &header, &data)?;
        }
        self.put(&buf)?;
        let end = self.pos;
        let header = bag_header(
            index_pos,
            len_u32(self.conns.len())?,
            len_u32(self.chunks.len())?,
        );
        self.inner
            .seek(SeekFrom::Start(self.base + MAGIC.len() as u64))?;
        self.inner.write_all(&header)?;
        self.inner.seek(SeekFrom::Start(self.base + end))?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Closes the last chunk (with its index data) but writes no index section and leaves the bag
    /// header at `index_pos` 0, `conn_count` 0, `chunk_count` 0: a recording killed between chunks,
    /// which readers must recover by scanning the chunk section.
    pub fn finish_unindexed(mut self) -> io::Result<W> {
        self.close_chunk()?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Like a recording killed in the middle of a chunk: earlier chunks are complete, the open
    /// chunk is written with the placeholder header of a live recorder (`size` 0, data length 0)
    /// followed by its data and no index-data records; no index section, bag header not updated.
    /// With [`Compression::None`] this is byte for byte what `rosbag record` leaves behind; with
    /// bz2/lz4 the data following is the complete compressed chunk.
    pub fn finish_interrupted(mut self) -> io::Result<W> {
        if let Some(chunk) = self.chunk.take() {
            let compression = self.opts.compression;
            let mut header = Vec::with_capacity(48);
            put_field(&mut header, "compression", compression.name().as_bytes());
            put_field(&mut header, "op", &[op::CHUNK]);
            put_field(&mut header, "size", &0u32.to_le_bytes());
            let mut buf = Vec::with_capacity(header.len() + 8);
            put_record(&mut buf, &header, &[])?;
            self.put(&buf)?;
            let data = compression.compress(&chunk.data)?;
            self.put(&data)?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Writes the open chunk record, its index-data records, and remembers its chunk info.
    fn close_chunk(&mut self) -> io::Result<()> {
        let Some(chunk) = self.chunk.take() else {
            return Ok(());
        };
        let chunk_pos = self.pos;
        let compressed = self.opts.compression.compress(&chunk.data)?;
        let mut header = Vec::with_capacity(48);
        put_field(
            &mut header,
            "compression",
            self.opts.compression.name().as_bytes(),
        );
        put_field(&mut header, "op", &[op::CHUNK]);
        put_field(
            &mut header,
            "size",
            &len_u32(chunk.data.len())?.to_le_bytes(),
        );
        let mut buf = Vec::with_capacity(compressed.len() + 64);
        put_record(&mut buf, &header, &compressed)?;
        drop(compressed);

        let mut counts = Vec::with_capacity(chunk.index.len());
        for (conn, mut entries) in chunk.index {
            // rosbag keeps each connection's entries in a time-ordered multiset (stable for ties).
            entries.sort_by_key(|&(t, _)| t);
            let count = len_u32(entries.len())?;
            let mut header = Vec::with_capacity(48);
            put_field(&mut header, "conn", &conn.to_le_bytes());
            put_field(&mut header, "count", &count.to_le_bytes());
            put_field(&mut header, "op", &[op::INDEX_DATA]);
            put_field(&mut header, "ver", &1u32.to_le_bytes());
            let mut data = Vec::with_capacity(entries.len() * 12);
            for (t, offset) in entries {
                data.extend_from_slice(&encode_time(t)?);
                data.extend_from_slice(&offset.to_le_bytes());
            }
            put_record(&mut buf, &header, &data)?;
            counts.push((conn, count));
        }
        self.put(&buf)?;
        self.chunks.push(WrittenChunk {
            pos: chunk_pos,
            start_ns: chunk.start_ns,
            end_ns: chunk.end_ns,
            counts,
        });
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// The bag header record, padded with spaces to [`BAG_HEADER_LEN`] like rosbag.
fn bag_header(index_pos: u64, conn_count: u32, chunk_count: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(80);
    put_field(&mut header, "chunk_count", &chunk_count.to_le_bytes());
    put_field(&mut header, "conn_count", &conn_count.to_le_bytes());
    put_field(&mut header, "index_pos", &index_pos.to_le_bytes());
    put_field(&mut header, "op", &[op::BAG_HEADER]);
    let padding = vec![b' '; BAG_HEADER_LEN.saturating_sub(header.len())];
    let mut out = Vec::with_capacity(BAG_HEADER_LEN + 8);
    // Both parts are far below 4 GiB.
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(padding.len() as u32).to_le_bytes());
    out.extend_from_slice(&padding);
    out
}

/// A connection record (header `conn`, `op`, `topic`; data = the connection header block).
fn connection_record(out: &mut Vec<u8>, conn: u32, topic: &str, fields: &[u8]) {
    let mut header = Vec::with_capacity(32 + topic.len());
    put_field(&mut header, "conn", &conn.to_le_bytes());
    put_field(&mut header, "op", &[op::CONNECTION]);
    put_field(&mut header, "topic", topic.as_bytes());
    // Connection headers are small (a topic, a type and a definition); far below 4 GiB.
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    out.extend_from_slice(fields);
}

/// Appends `len name=value` to a record header.
fn put_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let len = (name.len() + 1 + value.len()) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
}

/// Appends a record: header length, header, data length, data.
fn put_record(out: &mut Vec<u8>, header: &[u8], data: &[u8]) -> io::Result<()> {
    out.extend_from_slice(&len_u32(header.len())?.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&len_u32(data.len())?.to_le_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// A ROS time field: `u32` seconds then `u32` nanoseconds, little-endian.
fn encode_time(time_ns: u64) -> io::Result<[u8; 8]> {
    let sec = u32::try_from(time_ns / 1_000_000_000)
        .map_err(|_| invalid_input(format!("time {time_ns} ns does not fit u32 seconds")))?;
    let nsec = (time_ns % 1_000_000_000) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&sec.to_le_bytes());
    out[4..].copy_from_slice(&nsec.to_le_bytes());
    Ok(out)
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid_input(format!("length {len} does not fit u32")))
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Little-endian ROS1 serializer for building message payloads in tests and the demo.
///
/// Methods append one field and return `&mut Self` for chaining. Lengths above `u32::MAX` panic
/// (a test helper never builds such payloads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(Vec<u8>);

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// `uint32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `float64`.
    fn f64(&mut self, v: f64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `string`: `u32` byte length, then the bytes (no terminator).
    pub fn string(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// `time`: `u32` seconds, `u32` nanoseconds.
    fn time(&mut self, sec: u32, nsec: u32) -> &mut Self {
        self.u32(sec).u32(nsec)
    }

    /// A variable-length `uint8[]`: `u32` length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.array_len(v.len()).raw(v)
    }

    /// Bytes without a length prefix (fixed-size arrays, pre-serialized parts).
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }

    /// The `u32` element count that starts a variable-length array.
    fn array_len(&mut self, len: usize) -> &mut Self {
        let len = u32::try_from(len).expect("test payload arrays stay below 4 Gi elements");
        self.u32(len)
    }

    /// A variable-length `float64[]`.
    pub fn f64_array(&mut self, v: &[f64]) -> &mut Self {
        self.array_len(v.len());
        for x in v {
            self.f64(*x);
        }
        self
    }

    /// A variable-length `string[]`.
    pub fn string_array<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.array_len(v.len());
        for s in v {
            self.string(s.as_ref());
        }
        self
    }

    /// A `std_msgs/Header`: `seq`, `stamp`, `frame_id`.
    pub fn header(&mut self, seq: u32, sec: u32, nsec: u32, frame_id: &str) -> &mut Self {
        self.u32(seq).time(sec, nsec).string(frame_id)
    }

    /// The serialized bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The serialized bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// The other ROS primitives, which only the unit tests serialize.
#[cfg(test)]
impl Payload {
    /// `bool` as one byte 0/1.
    fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(u8::from(v));
        self
    }

    /// `uint8` / `byte` / `char`.
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// `int8`.
    fn i8(&mut self, v: i8) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `uint16`.
    fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `int16`.
    fn i16(&mut self, v: i16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `int32`.
    fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `uint64`.
    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `int64`.
    fn i64(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `float32`.
    fn f32(&mut self, v: f32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// `duration`: `i32` seconds, `i32` nanoseconds.
    fn duration(&mut self, sec: i32, nsec: i32) -> &mut Self {
        self.i32(sec).i32(nsec)
    }

    /// Bytes serialized so far.
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Payload> for Vec<u8> {
    fn from(p: Payload) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    /// One parsed record: header fields in file order, data, and its offset.
    #[derive(Debug)]
    struct Rec {
        offset: usize,
        fields: Vec<(String, Vec<u8>)>,
        data: Vec<u8>,
    }

    impl Rec {
        fn get(&self, name: &str) -> &[u8] {
            &self
                .fields
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("field {name} missing in {self:?}"))
                .1
        }
        fn op(&self) -> u8 {
            self.get("op")[0]
        }
        fn u32(&self, name: &str) -> u32 {
            u32::from_le_bytes(self.get(name).try_into().unwrap())
        }
        fn u64(&self, name: &str) -> u64 {
            u64::from_le_bytes(self.get(name).try_into().unwrap())
        }
        fn time(&self, name: &str) -> u64 {
            time_ns(self.get(name))
        }
    }

    fn time_ns(b: &[u8]) -> u64 {
        let sec = u32::from_le_bytes(b[..4].try_into().unwrap()) as u64;
        let nsec = u32::from_le_bytes(b[4..8].try_into().unwrap()) as u64;
        sec * 1_000_000_000 + nsec
    }

    fn parse_fields(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let field = &b[4..4 + len];
            let eq = field.iter().position(|&c| c == b'=').unwrap();
            out.push((
                String::from_utf8(field[..eq].to_vec()).unwrap(),
                field[eq + 1..].to_vec(),
            ));
            b = &b[4 + len..];
        }
        out
    }

    fn parse_records(b: &[u8], base: usize) -> Vec<Rec> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hl = u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
            let fields = parse_fields(&b[i + 4..i + 4 + hl]);
            let j = i + 4 + hl;
            let dl = u32::from_le_bytes(b[j..j + 4].try_into().unwrap()) as usize;
            out.push(Rec {
                offset: base + i,
                fields,
                data: b[j + 4..j + 4 + dl].to_vec(),
            });
            i = j + 4 + dl;
        }
        out
    }

    fn decompress(compression: &[u8], data: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            b"none" => out.extend_from_slice(data),
            b"bz2" => {
                bzip2::read::BzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            b"lz4" => {
                lz4::Decoder::new(data)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
            }
            other => panic!("unknown compression {other:?}"),
        }
        assert_eq!(out.len(), size, "chunk size field");
        out
    }

    const DEF: &str = "int32 data\n";
    const MD5: &str = "da5909fbe378aeaf85e547e830cc1bb7";

    /// Three connections, 200 messages with a few out-of-order times; small threshold so there
    /// are several chunks. Returns the expected (conn, time, payload) in write order.
    /// (bag bytes, the (conn, time, payload) messages written).
    #[allow(clippy::type_complexity)]
    fn sample(opts: BagWriterOptions) -> (Vec<u8>, Vec<(u32, u64, Vec<u8>)>) {
        let mut w = BagWriter::new(Cursor::new(Vec::new()), opts).unwrap();
        let a = w.add_connection("/a", "std_msgs/Int32", MD5, DEF).unwrap();
        let b = w
            .add_connection_info(
                &ConnectionInfo::new("/b", "std_msgs/Int32", MD5, DEF)
                    .callerid("/talker")
                    .latching(true),
            )
            .unwrap();
        let c = w
            .add_connection("/c/raw", "std_msgs/UInt8MultiArray", MD5, "uint8[] data\n")
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let conn = [a, b, c][(i % 3) as usize];
            // Times mostly increase; every 7th goes back a little, as real recordings do.
            let t = 1_600_000_000_000_000_000u64 + u64::from(i) * 10_000_000
                - if i % 7 == 0 { 15_000_000 } else { 0 };
            let mut p = Payload::new();
            if conn == c {
                p.bytes(&vec![i as u8; (i as usize * 37) % 500]);
            } else {
                p.i32(i as i32 - 100);
            }
            w.write(conn, t, p.as_slice()).unwrap();
            expected.push((conn, t, p.into_vec()));
        }
        (w.finish().unwrap().into_inner(), expected)
    }

    fn small_opts(compression: Compression) -> BagWriterOptions {
        BagWriterOptions {
            compression,
            chunk_threshold: 2000,
            ..BagWriterOptions::default()
        }
    }

    #[test]
    fn payload_encoding() {
        let mut p = Payload::new();
        p.bool(true)
            .u8(0xab)
            .i8(-2)
            .u16(0x0102)
            .i16(-3)
            .u32(0x0a0b0c0d)
            .i32(-4)
            .u64(5)
            .i64(-6)
            .f32(1.5)
            .f64(-2.25)
            .string("hi")
            .time(7, 8)
            .duration(-1, 9)
            .bytes(&[1, 2, 3])
            .raw(&[4, 5])
            .array_len(2)
            .f64_array(&[0.5])
            .string_array(&["x"]);
        let mut e: Vec<u8> = vec![
            1, 0xab, 0xfe, 0x02, 0x01, 0xfd, 0xff, 0x0d, 0x0c, 0x0b, 0x0a,
        ];
        e.extend((-4i32).to_le_bytes());
        e.extend(5u64.to_le_bytes());
        e.extend((-6i64).to_le_bytes());
        e.extend(1.5f32.to_le_bytes());
        e.extend((-2.25f64).to_le_bytes());
        e.extend([2, 0, 0, 0, b'h', b'i']);
        e.extend([7, 0, 0, 0, 8, 0, 0, 0]);
        e.extend([0xff, 0xff, 0xff, 0xff, 9, 0, 0, 0]);
        e.extend([3, 0, 0, 0, 1, 2, 3, 4, 5, 2, 0, 0, 0]);
        e.extend([1, 0, 0, 0]);
        e.extend(0.5f64.to_le_bytes());
        e.extend([1, 0, 0, 0, 1, 0, 0, 0, b'x']);
        assert_eq!(p.len(), e.len());
        assert_eq!(p.into_vec(), e);

        let mut h = Payload::new();
        h.header(3, 10, 20, "base");
        assert_eq!(
            h.as_slice(),
            &[
                3, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, b'b', b'a', b's', b'e'
            ]
        );
    }

    /// Walks the whole file by hand and checks every structural rule of the format.
    fn check_layout(bytes: &[u8], expected: &[(u32, u64, Vec<u8>)], opts: &BagWriterOptions) {
        assert_eq!(&bytes[..13], MAGIC);
        let hl = u32::from_le_bytes(bytes[13..17].try_into().unwrap()) as usize;
        let dl = u32::from_le_bytes(bytes[17 + hl..21 + hl].try_into().unwrap()) as usize;
        assert_eq!(hl + dl, BAG_HEADER_LEN);
        assert!(bytes[21 + hl..21 + hl + dl].iter().all(|&c| c == b' '));
        let first = 21 + hl + dl;
        assert_eq!(first, 4117, "first record offset as in rosbag bags");
        let header = &parse_records(&bytes[13..first], 13)[0];
        assert_eq!(header.op(), op::BAG_HEADER);
        let index_pos = header.u64("index_pos") as usize;
        let conn_count = header.u32("conn_count");
        let chunk_count = header.u32("chunk_count");
        assert_eq!(conn_count, 3);

        let chunk_section = parse_records(&bytes[first..index_pos], first);
        let index_section = parse_records(&bytes[index_pos..], index_pos);

        // Chunk section: chunk, index data..., chunk, index data...
        let mut got = Vec::new();
        let mut chunks = Vec::new();
        let mut conn_records_seen = 0;
        let mut i = 0;
        while i < chunk_section.len() {
            let chunk = &chunk_section[i];
            assert_eq!(chunk.op(), op::CHUNK);
            assert_eq!(chunk.get("compression"), opts.compression.name().as_bytes());
            let data = decompress(
                chunk.get("compression"),
                &chunk.data,
                chunk.u32("size") as usize,
            );
            let inner = parse_records(&data, 0);
            let mut per_conn: BTreeMap<u32, Vec<(u64, u32)>> = BTreeMap::new();
            for r in &inner {
                match r.op() {
                    op::CONNECTION => conn_records_seen += 1,
                    op::MESSAGE_DATA => {
                        let conn = r.u32("conn");
                        let t = r.time("time");
                        per_conn.entry(conn).or_default().push((t, r.offset as u32));
                        got.push((conn, t, r.data.clone()));
                    }
                    other => panic!("op {other} inside a chunk"),
                }
            }
            assert!(
                data.len() > opts.chunk_threshold || i + 1 + per_conn.len() == chunk_section.len()
            );
            i += 1;
            for (conn, mut entries) in per_conn.clone() {
                let idx = &chunk_section[i];
                assert_eq!(idx.op(), op::INDEX_DATA);
                assert_eq!(idx.u32("ver"), 1);
                assert_eq!(idx.u32("conn"), conn);
                assert_eq!(idx.u32("count") as usize, entries.len());
                entries.sort_by_key(|e| e.0);
                let listed: Vec<(u64, u32)> = idx
                    .data
                    .chunks(12)
                    .map(|e| {
                        (
                            time_ns(&e[..8]),
                            u32::from_le_bytes(e[8..].try_into().unwrap()),
                        )
                    })
                    .collect();
                assert_eq!(listed, entries);
                i += 1;
            }
            chunks.push((chunk.offset, per_conn));
        }
        assert_eq!(got, expected);
        assert_eq!(chunks.len() as u32, chunk_count);
        assert!(chunk_count > 2, "threshold splits the sample");
        match opts.connection_records {
            ConnectionRecords::FirstUse => assert_eq!(conn_records_seen, 3),
            ConnectionRecords::EveryChunk => assert_eq!(conn_records_seen, 3 * chunk_count),
        }

        // Index section: connections, then chunk infos.
        assert_eq!(index_section.len(), (conn_count + chunk_count) as usize);
        for (id, r) in index_section[..3].iter().enumerate() {
            assert_eq!(r.op(), op::CONNECTION);
            assert_eq!(r.u32("conn"), id as u32);
            let f = parse_fields(&r.data);
            let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
            if id == 1 {
                assert_eq!(
                    names,
                    [
                        "callerid",
                        "latching",
                        "md5sum",
                        "message_definition",
                        "topic",
                        "type"
                    ]
                );
            } else {
                assert_eq!(names, ["md5sum", "message_definition", "topic", "type"]);
            }
            assert_eq!(r.get("topic"), f[f.len() - 2].1.as_slice());
        }
        for (r, (pos, per_conn)) in index_section[3..].iter().zip(&chunks) {
            assert_eq!(r.op(), op::CHUNK_INFO);
            assert_eq!(r.u32("ver"), 1);
            assert_eq!(r.u64("chunk_pos") as usize, *pos);
            assert_eq!(r.u32("count") as usize, per_conn.len());
            let times = per_conn.values().flatten().map(|e| e.0);
            assert_eq!(r.time("start_time"), times.clone().min().unwrap());
            assert_eq!(r.time("end_time"), times.max().unwrap());
            let listed: Vec<(u32, u32)> = r
                .data
                .chunks(8)
                .map(|e| {
                    (
                        u32::from_le_bytes(e[..4].try_into().unwrap()),
                        u32::from_le_bytes(e[4..].try_into().unwrap()),
                    )
                })
                .collect();
            let want: Vec<(u32, u32)> =
                per_conn.iter().map(|(c, v)| (*c, v.len() as u32)).collect();
            assert_eq!(listed, want);
        }
    }

    #[test]
    fn layout_and_round_trip_every_compression() {
        for compression in [Compression::None, Compression::Bz2, Compression::Lz4] {
            for connection_records in [ConnectionRecords::FirstUse, ConnectionRecords::EveryChunk] {
                let opts = BagWriterOptions {
                    connection_records,
                    ..small_opts(compression)
                };
                let (bytes, expected) = sample(opts.clone());
                check_layout(&bytes, &expected, &opts);
            }
        }
    }

    #[test]
    fn lz4_frame_matches_roslz4_header() {
        let data = Compression::Lz4.compress(b"hello hello hello").unwrap();
        // Magic, FLG = version 1 | independent blocks | content checksum, BD = 1 MiB blocks.
        assert_eq!(&data[..6], &[0x04, 0x22, 0x4d, 0x18, 0x64, 0x60]);
    }

    #[test]
    fn empty_bag_and_bad_input() {
        let mut w = BagWriter::new(Cursor::new(Vec::new()), BagWriterOptions::default()).unwrap();
        assert!(w.write(0, 0, b"").is_err(), "unknown connection");
        let c = w.add_connection("/a", "std_msgs/Int32", MD5, DEF).unwrap();
        assert!(
            w.write(c, u64::MAX, b"").is_err(),
            "time beyond u32 seconds"
        );
        let bytes = w.finish().unwrap().into_inner();
        let header = &parse_records(&bytes[13..4117], 13)[0];
        assert_eq!(header.u64("index_pos"), 4117);
        assert_eq!(header.u32("chunk_count"), 0);
        assert_eq!(header.u32("conn_count"), 1);
        assert_eq!(parse_records(&bytes[4117..], 4117)[0].op(), op::CONNECTION);
    }

    #[test]
    fn writes_at_a_nonzero_stream_position() {
        let mut cur = Cursor::new(b"prefix".to_vec());
        cur.seek(SeekFrom::End(0)).unwrap();
        let mut w = BagWriter::new(cur, small_opts(Compression::None)).unwrap();
        let c = w.add_connection("/a", "std_msgs/Int32", MD5, DEF).unwrap();
        w.write(c, 5, &[1, 2, 3, 4]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(&bytes[..6], b"prefix");
        let bag = &bytes[6..];
        let header = &parse_records(&bag[13..4117], 13)[0];
        let index_pos = header.u64("index_pos") as usize;
        assert_eq!(parse_records(&bag[index_pos..], 0)[0].op(), op::CONNECTION);
    }

    #[test]
    fn unindexed_and_interrupted_bags() {
        let build = |n: u32| {
            let mut w =
                BagWriter::new(Cursor::new(Vec::new()), small_opts(Compression::None)).unwrap();
            let c = w.add_connection("/a", "std_msgs/Int32", MD5, DEF).unwrap();
            for i in 0..n {
                w.write(c, u64::from(i) * 1000, &[0u8; 300]).unwrap();
            }
            w
        };
        let bytes = build(10).finish_unindexed().unwrap().into_inner();
        let recs = parse_records(&bytes[13..], 13);
        assert_eq!(recs[0].u64("index_pos"), 0);
        assert_eq!(recs[0].u32("chunk_count"), 0);
        let ops: Vec<u8> = recs[1..].iter().map(Rec::op).collect();
        assert_eq!(
            ops,
            [5, 4, 5, 4],
            "two complete chunks, each with its index data"
        );

        let bytes = build(10).finish_interrupted().unwrap().into_inner();
        let recs = parse_records(&bytes[13..4117], 13);
        assert_eq!(recs[0].u64("index_pos"), 0);
        let recs = parse_records(&bytes[4117..], 4117);
        let ops: Vec<u8> = recs.iter().map(Rec::op).collect();
        // Complete chunk + index, then a placeholder chunk header and the loose records.
        assert_eq!(ops[..3], [5, 4, 5]);
        assert!(ops[3..].iter().all(|&o| o == op::MESSAGE_DATA));
        assert_eq!(recs[1].u32("count") as usize + ops.len() - 3, 10);
        assert_eq!(recs[2].u32("size"), 0);
        assert!(recs[2].data.is_empty());
    }

    /// Cross-check with the independent `rosbag` crate.
    #[test]
    fn rosbag_crate_reads_what_we_write() {
        use rosbag::{ChunkRecord, IndexRecord, MessageRecord, RosBag};
        for compression in [Compression::None, Compression::Bz2, Compression::Lz4] {
            let (bytes, expected) = sample(small_opts(compression));
            let path = std::env::temp_dir().join(format!(
                "bag2dataset-writer-{}-{}.bag",
                std::process::id(),
                compression.name()
            ));
            std::fs::write(&path, &bytes).unwrap();
            let bag = RosBag::new(&path).unwrap();
            assert_eq!(bag.get_conn_count(), 3);
            let mut conns = Vec::new();
            let mut infos = Vec::new();
            for r in bag.index_records() {
                match r.unwrap() {
                    IndexRecord::Connection(c) => conns.push((
                        c.id,
                        c.topic.to_owned(),
                        c.tp.to_owned(),
                        c.caller_id.to_owned(),
                        c.latching,
                    )),
                    IndexRecord::ChunkInfo(ci) => {
                        let n: u32 = ci.entries().map(|e| e.count).sum();
                        infos.push((ci.chunk_pos, ci.start_time, ci.end_time, n));
                    }
                    IndexRecord::IndexData(_) => panic!("index data in the index section"),
                }
            }
            assert_eq!(
                conns,
                [
                    (
                        0,
                        "/a".into(),
                        "std_msgs/Int32".into(),
                        String::new(),
                        false
                    ),
                    (
                        1,
                        "/b".into(),
                        "std_msgs/Int32".into(),
                        "/talker".into(),
                        true
                    ),
                    (
                        2,
                        "/c/raw".into(),
                        "std_msgs/UInt8MultiArray".into(),
                        String::new(),
                        false
                    ),
                ]
            );
            assert_eq!(infos.len() as u32, bag.get_chunk_count());
            assert_eq!(infos.iter().map(|i| i.3).sum::<u32>(), 200);

            let mut got = Vec::new();
            let mut index_entries = 0;
            for r in bag.chunk_records() {
                match r.unwrap() {
                    ChunkRecord::Chunk(chunk) => {
                        for m in chunk.messages() {
                            if let MessageRecord::MessageData(m) = m.unwrap() {
                                got.push((m.conn_id, m.time, m.data.to_vec()));
                            }
                        }
                    }
                    ChunkRecord::IndexData(idx) => index_entries += idx.entries().count(),
                }
            }
            assert_eq!(got, expected, "{compression:?}");
            assert_eq!(index_entries, 200);
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// Writes the test sample as `sample-{none,bz2,lz4}.bag` (rosbag layout) and
    /// `sample-every-chunk-lz4.bag` into `$BAG2DATASET_OUT_DIR`, for checks with other readers.
    #[test]
    #[ignore]
    fn write_sample_files() {
        let dir = std::env::var_os("BAG2DATASET_OUT_DIR").expect("set BAG2DATASET_OUT_DIR");
        let dir = Path::new(&dir);
        for compression in [Compression::None, Compression::Bz2, Compression::Lz4] {
            let (bytes, _) = sample(small_opts(compression));
            let name = format!("sample-{}.bag", compression.name());
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let opts = BagWriterOptions {
            connection_records: ConnectionRecords::EveryChunk,
            ..small_opts(Compression::Lz4)
        };
        std::fs::write(dir.join("sample-every-chunk-lz4.bag"), sample(opts).0).unwrap();
    }
}
