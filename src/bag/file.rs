//! An opened bag file: the memory map, the checked bag header, and typed errors that name the
//! file and the absolute offset of any problem.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use super::record::{MAGIC, Record, RecordError, op};
use crate::error::{Error, Result};

/// Most the kernel maps around one read fault of a file mapping; released ranges are widened
/// to it (2 MiB). Linux maps `fault_around_bytes` (64 KiB) around a fault, but since 6.16 ext4
/// (like xfs before it) caches files in large folios, and a fault maps the whole folio, up to
/// the PMD size (2 MiB on x86-64): touching one chunk header then keeps up to 2 MiB resident.
const FAULT_AROUND_BYTES: u64 = 2 << 20;

/// How a traced read reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// A positioned read (`pread64`) into a buffer.
    Positioned,
    /// A range read through the memory map (page faults, invisible to `strace`).
    Mapped,
    /// A recovery scan of the whole chunk section (through the map, or read in blocks).
    Scan,
}

/// One read of a bag recorded by [`trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedRead {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub kind: ReadKind,
}

/// A record of every read made of any bag while tracing is on, for tests that check a
/// command's read pattern (e.g. that a cold convert reads the file front to back once). Off by
/// default: then a read costs one relaxed atomic load more.
pub mod trace {
    use super::*;

    pub(super) static ON: AtomicBool = AtomicBool::new(false);
    pub(super) static READS: Mutex<Vec<TracedRead>> = Mutex::new(Vec::new());

    /// Starts recording (clearing what was recorded before).
    pub fn start() {
        READS.lock().unwrap_or_else(|e| e.into_inner()).clear();
        ON.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns the reads made since [`start`], in the order they were made
    /// (reads of every bag, by every thread: filter by path).
    pub fn stop() -> Vec<TracedRead> {
        ON.store(false, Ordering::SeqCst);
        std::mem::take(&mut *READS.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn record(path: &Path, offset: u64, len: u64, kind: ReadKind) {
        if ON.load(Ordering::Relaxed) {
            READS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(TracedRead {
                    path: path.to_path_buf(),
                    offset,
                    len,
                    kind,
                });
        }
    }
}

/// What the bag header record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BagHeader {
    /// Offset of the index section; 0 when the recording never finished (unindexed bag).
    pub index_pos: u64,
    pub(crate) conn_count: u32,
    pub(crate) chunk_count: u32,
    /// Offset of the first record after the bag header (start of the chunk section).
    pub data_start: u64,
}

/// A bag opened for reading through a read-only memory map.
///
/// Pages of the map that were read stay resident until released, so readers call
/// [`BagFile::release`] on ranges they are done with; file-backed RSS then stays flat.
pub struct BagFile {
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
    header: BagHeader,
}

impl BagFile {
    /// Opens `path`, maps it and checks the magic line and the bag header record.
    pub fn open(path: &Path) -> Result<BagFile> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let not_a_bag = |reason: String| Error::NotABag {
            path: path.to_path_buf(),
            reason,
        };
        if len == 0 {
            return Err(not_a_bag("the file is empty".into()));
        }
        // SAFETY: the map is read-only and private to this process; a bag being rewritten or
        // truncated by another process while we read it is outside what we support (as for
        // every mmap-based reader); everything read from the map is bounds-checked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let bytes: &[u8] = &map;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            let head = &bytes[..bytes.len().min(MAGIC.len())];
            if head.starts_with(b"#ROSBAG V") {
                return Err(not_a_bag(format!(
                    "unsupported bag version {:?} (only 2.0 is supported)",
                    String::from_utf8_lossy(head).trim()
                )));
            }
            return Err(not_a_bag(format!(
                "it does not start with {:?} (found {:?})",
                String::from_utf8_lossy(MAGIC).trim(),
                String::from_utf8_lossy(head)
            )));
        }
        let header = parse_bag_header(bytes).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            offset: e.offset as u64,
            what: format!("bag header record: {}", e.what),
        })?;
        // Readers of the map (dump's chunks, the shape probe, a recovery scan) jump around the
        // file: no read-ahead around their faults. The chunk reader asks for each chunk it
        // reads ([`BagFile::will_need`]); the index is read with positioned reads.
        let _ = map.advise(Advice::Random);
        trace::record(path, 0, header.data_start, ReadKind::Mapped);
        Ok(BagFile {
            path: path.to_path_buf(),
            file,
            map: Some(map),
            header,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> BagHeader {
        self.header
    }

    /// The whole file.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub(crate) fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Checks that `at` is inside the file.
    pub(crate) fn offset_in_file(&self, at: u64, what: &str) -> Result<usize> {
        if at >= self.len() {
            return Err(Error::Malformed {
                path: self.path.clone(),
                offset: at,
                what: format!(
                    "{what} offset is past the end of the file ({} bytes)",
                    self.len()
                ),
            });
        }
        Ok(at as usize)
    }

    /// Reads `[offset, offset + len)` with a positioned read into a new buffer (nothing of the
    /// map becomes resident). The caller bounds `len`; a range past the end is an error.
    pub(crate) fn read_exact_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if offset.saturating_add(len as u64) > self.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut buf = vec![0u8; len];
        trace::record(&self.path, offset, len as u64, ReadKind::Positioned);
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Reads up to `max` bytes at `offset` (fewer at the end of the file) with one positioned
    /// read. An offset past the end gives an empty buffer.
    pub(crate) fn read_up_to(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let len = (self.len().saturating_sub(offset)).min(max as u64) as usize;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.read_exact_at(offset, len)
    }

    /// Records, for [`trace`], that `[offset, offset + len)` is read through the map.
    pub(crate) fn note_mapped_read(&self, offset: u64, len: u64) {
        trace::record(&self.path, offset, len, ReadKind::Mapped);
    }

    /// Drops the mapped pages of `[offset, offset + len)` from this process's resident set.
    /// The data stays in the page cache; a later read faults it back in.
    ///
    /// The range is widened to [`FAULT_AROUND_BYTES`] boundaries: a read fault maps the cached
    /// pages around the faulting one too, and those would otherwise stay resident.
    pub(crate) fn release(&self, offset: u64, len: u64) {
        if let Some(map) = &self.map {
            let end = offset
                .saturating_add(len)
                .next_multiple_of(FAULT_AROUND_BYTES)
                .min(map.len() as u64);
            let offset = offset - offset % FAULT_AROUND_BYTES;
            if offset < end {
                // SAFETY: the map is read-only and file-backed, so MADV_DONTNEED only drops our
                // page-table entries; the next access re-reads the same bytes from the file.
                // No slice into the released range is used concurrently for writing.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        UncheckedAdvice::DontNeed,
                        offset as usize,
                        (end - offset) as usize,
                    )
                };
            }
        }
    }

    /// Tells the kernel that `[offset, offset + len)` is about to be read, so it is fetched in
    /// one go rather than page by page.
    pub(crate) fn will_need(&self, offset: u64, len: u64) {
        if let Some(map) = &self.map {
            let end = (offset.saturating_add(len)).min(map.len() as u64);
            if offset < end {
                let _ =
                    map.advise_range(Advice::WillNeed, offset as usize, (end - offset) as usize);
            }
        }
    }

    /// Releases every mapped page (used between phases, e.g. after indexing).
    pub(crate) fn release_all(&self) {
        self.release(0, self.len());
    }
}

fn parse_bag_header(bytes: &[u8]) -> Result<BagHeader, RecordError> {
    let at = MAGIC.len();
    let (fields, data_at, data_len) = Record::parse_header(bytes, at).map_err(|mut e| {
        e.what = format!("{} (the file ends inside the bag header)", e.what);
        e
    })?;
    let op_code = fields.op()?;
    if op_code != op::BAG_HEADER {
        return Err(RecordError {
            offset: at,
            what: format!("first record has op {op_code:#04x}, expected the bag header (0x03)"),
        });
    }
    let index_pos = fields.u64("index_pos")?;
    let conn_count = fields.u32("conn_count")?;
    let chunk_count = fields.u32("chunk_count")?;
    // rosbag pads the header record to 4096 bytes; short (unpadded) headers exist too.
    let data_start = data_at as u64 + data_len as u64;
    if data_start > bytes.len() as u64 {
        return Err(RecordError {
            offset: at,
            what: format!(
                "the file ends inside the bag header record ({} bytes declared, {} present)",
                data_start - at as u64,
                bytes.len() - at
            ),
        });
    }
    Ok(BagHeader {
        index_pos,
        conn_count,
        chunk_count,
        data_start,
    })
}
