//! Copying a published data file into another dataset without re-encoding it: the column chunks
//! of the features (images, states) are spliced in raw, byte range by byte range, and only the
//! three dataset-wide numbering columns (`episode_index`, `index`, `task_index`) are decoded,
//! shifted and encoded again. A file whose numbering does not change is hard-linked instead.
//!
//! **Memory.** A raw chunk is streamed through one [`COPY_BUFFER_BYTES`] buffer; a numbering column
//! is read and written [`RENUMBER_BATCH_ROWS`] values at a time (one decoded page of it is held
//! by the reader, one being filled by the writer: data pages are at most 1 MiB). Nothing else
//! grows with the file: the footer of the source is the only other thing held.

use std::fs::{self, File};
use std::path::Path;

use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::column::reader::get_typed_column_reader;
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::Int64Type;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{Error, Result};

/// Buffer a raw column chunk is streamed through (256 KiB: a 190 MB image chunk takes about
/// 760 reads instead of 23,000 with the default 8 KiB; 1 MiB was no faster and cost 0.3 MiB
/// more RSS on the merge benchmark).
const COPY_BUFFER_BYTES: usize = 256 << 10;

/// The source file, read through a [`COPY_BUFFER_BYTES`] buffer when a chunk is spliced.
struct WideReader(File);

impl parquet::file::reader::Length for WideReader {
    fn len(&self) -> u64 {
        parquet::file::reader::Length::len(&self.0)
    }
}

impl parquet::file::reader::ChunkReader for WideReader {
    type T = std::io::BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use std::io::{Seek, SeekFrom};
        let mut f = self.0.try_clone()?;
        f.seek(SeekFrom::Start(start))?;
        Ok(std::io::BufReader::with_capacity(COPY_BUFFER_BYTES, f))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        parquet::file::reader::ChunkReader::get_bytes(&self.0, start, length)
    }
}

/// Values of a numbering column decoded and re-encoded at a time (8 bytes each, plus a
/// 2-byte definition level: 40 KiB).
const RENUMBER_BATCH_ROWS: usize = 4096;

/// How the three numbering columns of a copied file change: `episode_index` and `index` are
/// shifted by the rows and episodes in front of the copy, `task_index` is mapped through the
/// merged task list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Renumber {
    pub(crate) episode_offset: i64,
    pub(crate) index_offset: i64,
    /// New task index of each task index of the source.
    pub(crate) tasks: Vec<i64>,
}

impl Renumber {
    /// Nothing changes: the file can be linked as it is.
    fn is_identity(&self) -> bool {
        self.episode_offset == 0
            && self.index_offset == 0
            && self.tasks.iter().enumerate().all(|(i, t)| *t == i as i64)
    }
}

/// What [`copy_data_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copied {
    /// A hard link to the source (same inode).
    Linked,
    /// Copied whole (linking was not possible, e.g. across filesystems).
    Whole,
    /// Written anew: raw feature chunks, renumbered numbering columns.
    Renumbered,
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Hard-links `src` to `dst`, or copies it (and fsyncs the copy) where a link is not possible.
/// Returns whether it linked.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<bool> {
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if fs::hard_link(src, dst).is_ok() {
        return Ok(true);
    }
    fs::copy(src, dst).map_err(|e| Error::io(dst, e))?;
    File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dst, e))?;
    Ok(false)
}

/// Puts the data file `src` at `dst` with its numbering changed by `renumber`: linked (or
/// copied whole) when nothing changes, else rewritten with the feature chunks spliced raw.
/// `schema` and `props` are the destination's (the source must have the same columns). A
/// rewritten file is complete but not yet fsynced: it is handed to `syncs`.
pub(crate) fn copy_data_file(
    src: &Path,
    dst: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    renumber: &Renumber,
    syncs: &mut SyncBehind,
) -> Result<Copied> {
    if renumber.is_identity() {
        return Ok(if link_or_copy(src, dst)? {
            Copied::Linked
        } else {
            Copied::Whole
        });
    }
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match renumber_file(src, dst, schema, props, renumber) {
        Ok(file) => {
            syncs.push(dst.to_path_buf(), file)?;
            Ok(Copied::Renumbered)
        }
        Err(e) => {
            let _ = fs::remove_file(dst);
            Err(e)
        }
    }
}

/// fsyncs written files one behind: the previous file's fsync runs on a thread of its own
/// while the next file is written, so the disk flush overlaps the copying (one thread and one
/// file handle at a time). [`SyncBehind::wait`] before publishing.
#[derive(Default)]
pub(crate) struct SyncBehind {
    pending: Option<(
        std::path::PathBuf,
        std::thread::JoinHandle<std::io::Result<()>>,
    )>,
}

impl SyncBehind {
    /// Waits for the previous file's fsync, then starts `file`'s.
    fn push(&mut self, path: std::path::PathBuf, file: File) -> Result<()> {
        self.wait()?;
        let handle = std::thread::Builder::new()
            .name("fsync".into())
            .spawn(move || file.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        self.pending = Some((path, handle));
        Ok(())
    }

    /// Waits until every pushed file is on disk.
    pub(crate) fn wait(&mut self) -> Result<()> {
        if let Some((path, handle)) = self.pending.take() {
            match handle.join() {
                Ok(r) => r.map_err(|e| Error::io(&path, e))?,
                Err(_) => return Err(bad(&path, "the fsync thread panicked")),
            }
        }
        Ok(())
    }
}

impl Drop for SyncBehind {
    /// No thread outlives its owner (an error path that did not wait).
    fn drop(&mut self) {
        if let Some((_, h)) = self.pending.take() {
            let _ = h.join();
        }
    }
}

/// Which numbering column a top-level column is, if any.
#[derive(Clone, Copy)]
enum Numbering {
    Episode,
    Index,
    Task,
}

fn renumber_file(
    src: &Path,
    dst: &Path,
    schema: &SchemaRef,
    props: &WriterProperties,
    renumber: &Renumber,
) -> Result<File> {
    let file = File::open(src).map_err(|e| Error::io(src, e))?;
    let reader = SerializedFileReader::new(file.try_clone().map_err(|e| Error::io(src, e))?)
        .map_err(Error::parquet(src))?;
    let raw = WideReader(file);
    let out = File::create(dst).map_err(|e| Error::io(dst, e))?;
    let aw = ArrowWriter::try_new(out, schema.clone(), Some(props.clone()))
        .map_err(Error::parquet(dst))?;
    let (mut fw, _) = aw.into_serialized_writer().map_err(Error::parquet(dst))?;
    // The source must have exactly the destination's leaf columns, in order.
    let (theirs, ours) = (
        reader.metadata().file_metadata().schema_descr_ptr(),
        fw.schema_descr().clone(),
    );
    let paths = |d: &parquet::schema::types::SchemaDescriptor| -> Vec<String> {
        d.columns().iter().map(|c| c.path().string()).collect()
    };
    if paths(&theirs) != paths(&ours) {
        return Err(bad(
            src,
            format!(
                "data columns {:?} differ from the merged dataset's {:?}",
                paths(&theirs),
                paths(&ours)
            ),
        ));
    }
    let numbering: Vec<Option<Numbering>> = ours
        .columns()
        .iter()
        .map(|c| match c.path().string().as_str() {
            "episode_index" => Some(Numbering::Episode),
            "index" => Some(Numbering::Index),
            "task_index" => Some(Numbering::Task),
            _ => None,
        })
        .collect();
    for (g, rg) in reader.metadata().row_groups().iter().enumerate() {
        let rows = u64::try_from(rg.num_rows())
            .map_err(|_| bad(src, format!("row group {g}: negative row count")))?;
        let group = reader.get_row_group(g).map_err(Error::parquet(src))?;
        let mut rgw = fw.next_row_group().map_err(Error::parquet(dst))?;
        for (c, col) in rg.columns().iter().enumerate() {
            match numbering[c] {
                None => {
                    let close = ColumnCloseResult {
                        bytes_written: col.compressed_size() as u64,
                        rows_written: rows,
                        metadata: col.clone(),
                        bloom_filter: None,
                        column_index: None,
                        offset_index: None,
                    };
                    rgw.append_column(&raw, close)
                        .map_err(Error::parquet(dst))?;
                }
                Some(kind) => {
                    let at = |what: String| {
                        bad(
                            src,
                            format!("row group {g}, column {}: {what}", col.column_path()),
                        )
                    };
                    let mut input = get_typed_column_reader::<Int64Type>(
                        group.get_column_reader(c).map_err(Error::parquet(src))?,
                    );
                    let mut cw = rgw
                        .next_column()
                        .map_err(Error::parquet(dst))?
                        .ok_or_else(|| at("the destination has no such column".into()))?;
                    let typed = cw.typed::<Int64Type>();
                    let (mut values, mut defs) = (
                        Vec::with_capacity(RENUMBER_BATCH_ROWS),
                        Vec::with_capacity(RENUMBER_BATCH_ROWS),
                    );
                    let mut done = 0u64;
                    while done < rows {
                        values.clear();
                        defs.clear();
                        let (n, nv, _) = input
                            .read_records(RENUMBER_BATCH_ROWS, Some(&mut defs), None, &mut values)
                            .map_err(Error::parquet(src))?;
                        if n == 0 {
                            break;
                        }
                        if nv != n || defs.iter().any(|d| *d != 1) {
                            return Err(at("a null value (never written by this tool)".into()));
                        }
                        for v in &mut values {
                            *v = match kind {
                                Numbering::Episode => *v + renumber.episode_offset,
                                Numbering::Index => *v + renumber.index_offset,
                                Numbering::Task => usize::try_from(*v)
                                    .ok()
                                    .and_then(|t| renumber.tasks.get(t))
                                    .copied()
                                    .ok_or_else(|| {
                                        at(format!(
                                            "task_index {v} is not in the dataset's {} tasks",
                                            renumber.tasks.len()
                                        ))
                                    })?,
                            };
                        }
                        typed
                            .write_batch(&values, Some(&defs), None)
                            .map_err(Error::parquet(dst))?;
                        done += n as u64;
                    }
                    if done != rows {
                        return Err(at(format!("{done} values for {rows} rows")));
                    }
                    cw.close().map_err(Error::parquet(dst))?;
                }
            }
        }
        rgw.close().map_err(Error::parquet(dst))?;
    }
    fw.finish().map_err(Error::parquet(dst))?;
    fw.inner().try_clone().map_err(|e| Error::io(dst, e))
}
