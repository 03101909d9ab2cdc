//! The chunk reader: decompresses one chunk at a time (after checking its declared size against
//! a limit) and walks the message records inside it. Pages of the map holding the compressed
//! chunk are released once the chunk is decompressed or consumed; the converter reads chunks
//! with positioned reads instead ([`read_chunk_copied`]).

use super::decompress::decompress_bounded;
use super::file::BagFile;
use super::index::{ChunkCompression, ChunkInfo};
use super::record::{Record, RecordError, op};
use crate::error::{Error, Result};

/// The decompressed bytes of one chunk: borrowed straight from the map when stored
/// uncompressed, owned otherwise.
pub enum ChunkData<'a> {
    Mapped(&'a [u8]),
    Owned(Vec<u8>),
}

impl ChunkData<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            ChunkData::Mapped(b) => b,
            ChunkData::Owned(v) => v,
        }
    }
}

/// One message record inside a chunk.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub conn: u32,
    pub time_ns: u64,
    /// Offset of the message data record inside the decompressed chunk.
    pub offset: u32,
    pub data: &'a [u8],
}

/// Bytes of heap a chunk needs to be decompressed (0 for uncompressed chunks, which are read
/// in place from the map).
pub fn heap_needed(chunk: &ChunkInfo) -> u64 {
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
pub fn read_chunk_copied(bag: &BagFile, chunk: &ChunkInfo) -> Result<ChunkData<'static>> {
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
pub fn messages(data: &[u8]) -> impl Iterator<Item = Result<RawMessage<'_>, RecordError>> + '_ {
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
                    Ok(Some(RawMessage {
                        conn: fields.u32("conn")?,
                        time_ns: fields.time("time")?,
                        offset: offset as u32,
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
pub fn chunk_error(bag: &BagFile, chunk: &ChunkInfo, e: RecordError) -> Error {
    Error::Malformed {
        path: bag.path().to_path_buf(),
        offset: chunk.pos,
        what: format!(
            "chunk record, at byte {} of its decompressed data: {}",
            e.offset, e.what
        ),
    }
}
