//! `bag2dataset reindex`: writes a repaired, indexed copy of a bag with the project's bag
//! writer — everything the index (or a recovery scan) can reach, in file order, with the same
//! connections, record times and payloads.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::Exit;
use crate::bag::chunk_reader::{chunk_error, messages, read_chunk};
use crate::bag::writer::{BagWriter, BagWriterOptions, Compression, ConnectionInfo};
use crate::bag::{BagFile, BagIndex, ChunkCompression, RecoveryNote};
use crate::cli::{CompressionArg, ReindexArgs};
use crate::error::{Error, Result};

/// What a reindex wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReindexSummary {
    pub messages: u64,
    chunks: usize,
    connections: usize,
    pub compression: Compression,
}

/// Writes an indexed copy of `input` to `output` (through a temporary file renamed into place
/// once complete and synced). Chunks are compressed with `compression`, or like most of the
/// source's chunks. `on_note` receives the recovery note when the source had no usable index.
///
/// Connection ids are renumbered 0, 1, ... in the order of the source's ids (unchanged for
/// bags written by rosbag, whose ids already are). The `latching` field is written when the
/// source connection has a `callerid` (recorders write both) or is latched.
pub fn reindex_bag(
    input: &Path,
    output: &Path,
    compression: Option<Compression>,
    on_note: impl FnOnce(&RecoveryNote),
) -> Result<ReindexSummary> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize())
        && a == b
    {
        return Err(Error::Usage(format!(
            "{}: the repaired copy must not overwrite its source",
            output.display()
        )));
    }
    let bag = BagFile::open(input)?;
    let (index, note) = BagIndex::open_verified(&bag)?;
    if let Some(note) = &note {
        on_note(note);
    }
    let compression = compression.unwrap_or_else(|| source_compression(&index));
    let tmp = PathBuf::from(format!("{}.tmp", output.display()));
    let io_err = |e| Error::io(&tmp, e);
    let file = File::create(&tmp).map_err(io_err)?;
    let mut writer = BagWriter::new(
        BufWriter::new(file),
        BagWriterOptions::with_compression(compression),
    )
    .map_err(io_err)?;

    let mut conns = index.connections.clone();
    conns.sort_by_key(|c| c.id);
    let mut new_id = std::collections::HashMap::new();
    for c in &conns {
        let mut info = ConnectionInfo::new(&c.topic, &c.msgtype, &c.md5sum, &c.definition);
        if let Some(callerid) = &c.callerid {
            info = info.callerid(callerid).latching(c.latching);
        } else if c.latching {
            info = info.latching(true);
        }
        new_id.insert(c.id, writer.add_connection_info(&info).map_err(io_err)?);
    }
    let mut order: Vec<usize> = (0..index.chunks.len()).collect();
    order.sort_by_key(|&i| index.chunks[i].pos);
    for i in order {
        let chunk = &index.chunks[i];
        let data = read_chunk(&bag, chunk)?;
        for m in messages(data.bytes()) {
            let m = m.map_err(|e| chunk_error(&bag, chunk, e))?;
            // Messages of a connection without a record were dropped by the recovery scan.
            if let Some(&id) = new_id.get(&m.conn) {
                writer.write(id, m.time_ns, m.data).map_err(io_err)?;
            }
        }
        drop(data);
        bag.release(chunk.pos, chunk.end().saturating_sub(chunk.pos));
    }
    let messages = writer.message_count();
    writer.flush_chunk().map_err(io_err)?;
    let chunks = writer.chunk_count();
    let file = writer
        .finish()
        .map_err(io_err)?
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, output).map_err(|e| Error::io(output, e))?;
    Ok(ReindexSummary {
        messages,
        chunks,
        connections: conns.len(),
        compression,
    })
}

/// The compression most of the source's chunk records use (loose regions aside); none for a
/// bag without chunk records.
fn source_compression(index: &BagIndex) -> Compression {
    let count = |c: ChunkCompression| {
        index
            .chunks
            .iter()
            .filter(|k| !k.loose && k.compression == c)
            .count()
    };
    [
        (Compression::None, count(ChunkCompression::None)),
        (Compression::Bz2, count(ChunkCompression::Bz2)),
        (Compression::Lz4, count(ChunkCompression::Lz4)),
    ]
    .into_iter()
    .enumerate()
    .max_by_key(|&(i, (_, n))| (n, std::cmp::Reverse(i)))
    .map_or(Compression::None, |(_, (c, _))| c)
}

pub(crate) fn run(args: ReindexArgs) -> anyhow::Result<Exit> {
    let compression = args.compression.map(|c| match c {
        CompressionArg::None => Compression::None,
        CompressionArg::Bz2 => Compression::Bz2,
        CompressionArg::Lz4 => Compression::Lz4,
    });
    let summary = reindex_bag(&args.bag, &args.output, compression, |note| {
        eprintln!("warning: {}: {note}", args.bag.display())
    })?;
    eprintln!(
        "wrote {}: {} messages of {} connections in {} chunks ({})",
        args.output.display(),
        summary.messages,
        summary.connections,
        summary.chunks,
        summary.compression.name()
    );
    Ok(Exit::Ok)
}
