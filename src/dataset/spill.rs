//! Spilling the Parquet encoder's finished pages to disk while a row group is open.
//!
//! Parquet wants each column chunk contiguous in the file, but frames arrive with every column
//! at once, so parquet-rs buffers a row group's encoded pages until the row group is flushed.
//! Held in memory, that makes the row group size a memory figure, and small row groups make the
//! footer metadata (~10 KiB per row group, kept until the file closes) grow with the episode.
//! [`SpillStoreFactory`] gives each column chunk an unlinked temporary file in the staging
//! directory instead: a finished page goes to the page cache (not this process's RSS) and is
//! read back once, page by page, when the row group is spliced into the data file. Row groups
//! can then be large (few footer entries) while the writer holds only the pages being filled.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

/// Read-back buffers kept for reuse: a page read back is written to the data file and dropped
/// at once, so two cover the splice; reusing them spares the allocator fresh zeroed pages.
const POOLED_BUFFERS: usize = 2;

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// Makes one [`SpillStore`] per column chunk, in `dir`.
#[derive(Debug)]
pub(crate) struct SpillStoreFactory {
    dir: PathBuf,
    seq: AtomicU64,
    pool: Pool,
}

impl SpillStoreFactory {
    pub(crate) fn new(dir: PathBuf) -> Self {
        SpillStoreFactory {
            dir,
            seq: AtomicU64::new(0),
            pool: Pool::default(),
        }
    }
}

/// A read-back page; its buffer goes back to the pool when the writer drops it.
struct PooledBuf {
    buf: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOLED_BUFFERS
        {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

impl PageStoreFactory for SpillStoreFactory {
    fn create(&self, args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!(
            ".spill-{}-{n}-col{}",
            std::process::id(),
            args.column_index()
        ));
        Ok(Box::new(SpillStore {
            path,
            file: None,
            end: 0,
            pages: Vec::new(),
            pool: self.pool.clone(),
        }))
    }
}

/// Pages of one column chunk in an unlinked file (created at the first page, so a column
/// chunk that gets no page costs no file).
struct SpillStore {
    path: PathBuf,
    file: Option<File>,
    end: u64,
    /// (offset, length) of each page, indexed by its key.
    pages: Vec<(u64, usize)>,
    pool: Pool,
}

impl SpillStore {
    fn err(&self, what: &str, e: std::io::Error) -> ParquetError {
        ParquetError::General(format!(
            "spilling pages to {}: {what}: {e}",
            self.path.display()
        ))
    }

    fn file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&self.path)
                .map_err(|e| self.err("create", e))?;
            // Unlinked at once: the pages live as long as the store, and a crash leaves nothing.
            fs::remove_file(&self.path).map_err(|e| self.err("unlink", e))?;
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }
}

impl PageStore for SpillStore {
    fn put(&mut self, value: Bytes) -> Result<PageKey> {
        let at = self.end;
        let r = self.file()?.write_all_at(&value, at);
        r.map_err(|e| self.err("write", e))?;
        self.end += value.len() as u64;
        self.pages.push((at, value.len()));
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let (at, len) = *self
            .pages
            .get(key.get() as usize)
            .ok_or_else(|| ParquetError::General(format!("no spilled page {}", key.get())))?;
        let mut buf = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        buf.resize(len, 0);
        if len > 0 {
            let r = self.file()?.read_exact_at(&mut buf, at);
            r.map_err(|e| self.err("read back", e))?;
        }
        Ok(Bytes::from_owner(PooledBuf {
            buf,
            pool: self.pool.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use std::sync::Arc;

    #[test]
    fn spilled_row_groups_read_back_and_leave_no_files() {
        use arrow::array::{ArrayRef, BinaryArray, Int64Array};
        use arrow::record_batch::RecordBatch;
        let dir = std::env::temp_dir().join(format!("b2d-spill-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let blobs: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![i as u8; 3000 + i as usize])
            .collect();
        let bin: ArrayRef = Arc::new(BinaryArray::from_iter_values(blobs.iter()));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..200));
        let batch = RecordBatch::try_from_iter([("img", bin), ("id", ids)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_size_limit(16 << 10)
            .set_write_batch_size(1)
            // Dictionary columns hold their data pages until the dictionary is final.
            .set_dictionary_enabled(false)
            .build();
        let opts = ArrowWriterOptions::new()
            .with_properties(props)
            .with_page_store_factory(Arc::new(SpillStoreFactory::new(dir.clone())));
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new_with_options(&mut out, batch.schema(), opts).unwrap();
        w.write(&batch).unwrap();
        // Everything but the page being filled is on disk.
        assert!(w.memory_size() < 64 << 10, "{}", w.memory_size());
        assert!(w.in_progress_size() > 600_000);
        w.flush().unwrap();
        w.write(&batch.slice(0, 50)).unwrap();
        w.close().unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "spill files unlinked"
        );
        let r = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out))
            .unwrap()
            .build()
            .unwrap();
        let got: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
        let rows: usize = got.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 250);
        let all = arrow::compute::concat_batches(&batch.schema(), &got).unwrap();
        assert_eq!(all.slice(0, 200), batch);
        fs::remove_dir_all(&dir).unwrap();
    }
}
