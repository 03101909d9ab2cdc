//! The chunk reader: decompresses one chunk at a time (after checking its declared size against
//! a limit) and walks the message records inside it. Pages of the map holding the compressed
//! chunk are released once the chunk is decompressed or consumed; the converter reads chunks
//! with positioned reads instead ([`read_chunk_copied`]).

use std::ops::Range;

use super::decompress::decompress_bounded;
use super::file::BagFile;
use super::index::{ChunkCompression, ChunkInfo, apply_chunk_header};
use super::record::{Record, RecordError, op};
use crate::error::{Error, Result};

/// The decompressed bytes of one chunk: borrowed straight from the map when stored
/// uncompressed, owned otherwise (for an uncompressed chunk read whole with its record header
/// and index data, the part of that buffer holding its data).
pub enum ChunkData<'a> {
    Mapped(&'a [u8]),
    Owned(Vec<u8>),
    Within(Vec<u8>, Range<usize>),
}

impl ChunkData<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            ChunkData::Mapped(b) => b,
            ChunkData::Owned(v) => v,
            ChunkData::Within(v, r) => &v[r.clone()],
        }
    }
}

/// A chunk record as the converter's pass reads it: the record header, the stored data and the
/// index-data records after it, `[pos, end)` of the file, in one positioned read. Where they
/// end is known from the index section alone ([`super::BagIndex::span_end`]), so no header is
/// read before the pass; the header is parsed from this buffer.
pub(crate) struct StoredChunk {
    /// The chunk with its header fields filled in from the buffer.
    pub(crate) chunk: ChunkInfo,
    buf: Vec<u8>,
    /// Where the stored data lies in `buf`.
    data: Range<usize>,
}

impl StoredChunk {
    /// Reads `[chunk.pos, end)` and parses the chunk record's header from it; the data must lie
    /// inside the read.
    pub(crate) fn read(bag: &BagFile, chunk: &ChunkInfo, end: u64) -> Result<StoredChunk> {
        bag.offset_in_file(chunk.pos, "chunk")?;
        let len = end.saturating_sub(chunk.pos);
        let buf = usize::try_from(len)
            .ok()
            .and_then(|len| bag.read_exact_at(chunk.pos, len).ok())
            .ok_or_else(|| Error::Malformed {
                path: bag.path().to_path_buf(),
                offset: chunk.pos,
                what: format!(
                    "the chunk record and its index data ({len} bytes) run past the end of the file"
                ),
            })?;
        let mut chunk = chunk.clone();
        apply_chunk_header(bag, &buf, &mut chunk)?;
        if chunk.end() > end {
            return Err(Error::Malformed {
                path: bag.path().to_path_buf(),
                offset: chunk.pos,
                what: format!(
                    "chunk data of {} bytes runs past the next chunk record or the index section (at offset {end})",
                    chunk.data_len
                ),
            });
        }
        let from = (chunk.data_offset - chunk.pos) as usize;
        let data = from..from + chunk.data_len as usize;
        Ok(StoredChunk { chunk, buf, data })
    }

    /// The bytes after the chunk's data: its index-data records.
    pub(crate) fn after(&self) -> &[u8] {
        &self.buf[self.data.end..]
    }

    /// The chunk and its decompressed data, checked against its declared size (see
    /// [`read_chunk`]); an uncompressed chunk keeps the buffer as read.
    pub(crate) fn into_data(self, bag: &BagFile) -> Result<(ChunkInfo, ChunkData<'static>)> {
        if self.chunk.compression == ChunkCompression::None {
            check_stored_size(bag, &self.chunk, self.data.len())?;
            return Ok((self.chunk, ChunkData::Within(self.buf, self.data)));
        }
        // The caller holds the bytes of the decompressed copy ([`heap_needed`]) by now.
        let out = decompress_checked(bag, &self.chunk, &self.buf[self.data.clone()])?;
        Ok((self.chunk, ChunkData::Owned(out)))
    }
}

/// One message record inside a chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkMessage<'a> {
    pub conn: u32,
    pub time_ns: u64,
    pub data: &'a [u8],
}

/// Bytes of heap a chunk needs to be decompressed (0 for uncompressed chunks, which are read
/// in place from the map).
pub(crate) fn heap_needed(chunk: &ChunkInfo) -> u64 {
    match chunk.compression {
        ChunkCompression::None => 0,
        _ => chunk.uncompressed_size as u64,
    }
}

/// Decompresses `chunk`. The caller has checked [`heap_needed`] against its budget; the
/// declared size bounds the allocation (which grows only with the output actually decoded, see
/// [`decompress_bounded`]) and a stream that decodes to more or less is an error
/// (for a [`ChunkInfo::partial`] chunk of a recovered bag, only less: the stream may go on, or
/// be cut, past the complete records the scan kept).
pub fn read_chunk<'a>(bag: &'a BagFile, chunk: &ChunkInfo) -> Result<ChunkData<'a>> {
    let start = bag.offset_in_file(chunk.data_offset, "chunk data")?;
    let end = chunk.end() as usize;
    let raw = bag
        .bytes()
        .get(start..end)
        .ok_or_else(|| past_end(bag, chunk))?;
    bag.will_need(chunk.data_offset, chunk.data_len as u64);
    bag.note_mapped_read(chunk.data_offset, chunk.data_len as u64);
    if chunk.compression == ChunkCompression::None {
        check_stored_size(bag, chunk, raw.len())?;
        return Ok(ChunkData::Mapped(raw));
    }
    let out = decompress_checked(bag, chunk, raw);
    bag.release(chunk.data_offset, chunk.data_len as u64);
    out.map(ChunkData::Owned)
}

/// Like [`read_chunk`], but the stored bytes are read with a positioned read into a buffer of
/// their own instead of through the map, so no page of the bag becomes resident in this
/// process: the conversion's way, which counts every byte it holds against its ceiling (a
/// fault on a map of a file cached in large folios maps megabytes around the chunk).
pub(crate) fn read_chunk_copied(bag: &BagFile, chunk: &ChunkInfo) -> Result<ChunkData<'static>> {
    bag.offset_in_file(chunk.data_offset, "chunk data")?;
    let stored = bag
        .read_exact_at(chunk.data_offset, chunk.data_len as usize)
        .map_err(|_| past_end(bag, chunk))?;
    if chunk.compression == ChunkCompression::None {
        check_stored_size(bag, chunk, stored.len())?;
        return Ok(ChunkData::Owned(stored));
    }
    decompress_checked(bag, chunk, &stored).map(ChunkData::Owned)
}

fn past_end(bag: &BagFile, chunk: &ChunkInfo) -> Error {
    Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: "chunk data runs past the end of the file".into(),
    }
}

fn bad_chunk(bag: &BagFile, chunk: &ChunkInfo, what: String) -> Error {
    Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: format!("{} chunk: {what}", chunk.compression.name()),
    }
}

/// An uncompressed chunk must hold exactly its declared size.
fn check_stored_size(bag: &BagFile, chunk: &ChunkInfo, len: usize) -> Result<()> {
    let declared = chunk.uncompressed_size as usize;
    if len != declared {
        return Err(bad_chunk(
            bag,
            chunk,
            format!("holds {len} bytes but declares size {declared}"),
        ));
    }
    Ok(())
}

/// Decompresses the stored bytes `raw` of a compressed chunk and checks the result against the
/// declared size.
fn decompress_checked(bag: &BagFile, chunk: &ChunkInfo, raw: &[u8]) -> Result<Vec<u8>> {
    let declared = chunk.uncompressed_size as usize;
    let bad = |what: String| bad_chunk(bag, chunk, what);
    // The buffer grows with the output really produced (never past the declared size), so a
    // size that lies does not allocate.
    let (out, ended, damage) = decompress_bounded(raw, chunk.compression, declared);
    if out.len() < declared {
        return Err(bad(match damage {
            Some(what) => what,
            None => format!(
                "decompresses to {} bytes but declares size {declared}",
                out.len()
            ),
        }));
    }
    // A partial (recovered) chunk keeps a prefix: its stream goes on, is cut or damaged.
    if !chunk.partial {
        if let Some(what) = damage {
            return Err(bad(what));
        }
        if !ended {
            return Err(bad(format!(
                "decompresses to more than its declared size of {declared} bytes"
            )));
        }
    }
    Ok(out)
}

/// Walks the records of a decompressed chunk: message data records are yielded, connection
/// records (repeated inside chunks) are skipped. A malformed record ends the walk with an error
/// naming its offset inside the chunk.
pub fn messages(data: &[u8]) -> impl Iterator<Item = Result<ChunkMessage<'_>, RecordError>> + '_ {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        while !failed && at < data.len() {
            let rec = match Record::parse(data, at) {
                Ok(r) => r,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            };
            let offset = at;
            at = rec.end;
            let fields = rec.fields();
            let parsed = fields.op().and_then(|code| {
                if code == op::MESSAGE_DATA {
                    Ok(Some(ChunkMessage {
                        conn: fields.u32("conn")?,
                        time_ns: fields.time("time")?,
                        data: rec.data,
                    }))
                } else if code == op::CONNECTION {
                    Ok(None)
                } else {
                    Err(RecordError {
                        offset,
                        what: format!("unexpected record op {code:#04x} inside a chunk"),
                    })
                }
            });
            match parsed {
                Ok(Some(m)) => return Some(Ok(m)),
                Ok(None) => continue,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    })
}

/// Turns an error inside a decompressed chunk into a file error naming the chunk.
pub(crate) fn chunk_error(bag: &BagFile, chunk: &ChunkInfo, e: RecordError) -> Error {
    Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: format!(
            "chunk record, at byte {} of its decompressed data: {}",
            e.offset, e.what
        ),
    }
}
