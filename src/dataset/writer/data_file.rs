//! Data files: the open `data/chunk-XXX/file-YYY.parquet`, row groups flushed by size (pages
//! spilled until then), files rolled by size between episodes, and the row-group surgery that
//! cuts an aborted episode back out of the open file.

use std::fs::{self, File};
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, RowGroupMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::*;
use crate::dataset::schema::{self, HUGGINGFACE_META_KEY};
use crate::dataset::{DatasetSpec, FeatureKind};
use crate::error::{Error, Result};

/// Smallest and largest data page the writer asks for (pages being filled are held in memory,
/// one per column; finished ones are spilled).
pub(super) const MIN_PAGE_BYTES: usize = 8 << 10;

pub(super) const MAX_PAGE_BYTES: usize = 1 << 20;

pub(super) struct DataFile {
    pub(super) chunk: usize,
    pub(super) file: usize,
    pub(super) path: PathBuf,
    pub(super) writer: ArrowWriter<File>,
    /// Row groups that belong to completed episodes (kept if the current one is aborted).
    pub(super) kept_row_groups: usize,
}

/// Parquet properties of data files: snappy for numeric columns, no dictionaries; image bytes
/// uncompressed and without min/max statistics (encoded images neither compress nor
/// repeat, and their statistics would copy image prefixes into the footer). Data pages are
/// sized so that one being filled per column adds up to about `buffer_bytes`; with image
/// columns the encoder checks the page size after every value, so a page passes its limit by
/// at most one image.
pub(super) fn data_properties(
    spec: &DatasetSpec,
    schema: &SchemaRef,
    buffer_bytes: usize,
) -> WriterProperties {
    let hf = schema
        .metadata()
        .get(HUGGINGFACE_META_KEY)
        .cloned()
        .unwrap_or_default();
    let leaves = schema::leaf_columns(spec).max(1);
    let page = (buffer_bytes / leaves).clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES);
    let has_images = spec
        .features
        .iter()
        .any(|f| matches!(f.kind, FeatureKind::Image { .. }));
    let mut b = WriterProperties::builder()
        .set_data_page_size_limit(page)
        .set_write_batch_size(if has_images { 1 } else { 1024 })
        .set_compression(Compression::SNAPPY)
        // Dictionary encoders pre-allocate tens of KiB per column whatever the row group size;
        // our columns are mostly unique values, and snappy still squeezes the constant ones.
        .set_dictionary_enabled(false)
        // Page-level statistics and offset indexes are held in memory for every page of the
        // file until it closes, and an episode (a whole bag) lives in one file: that memory
        // would grow with the bag, and so would row-group statistics (a few hundred bytes per
        // column per row group). LeRobot never uses them; meta/stats.json has the real ones.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_offset_index_disabled(true)
        .set_max_row_group_row_count(None)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            HUGGINGFACE_META_KEY.to_string(),
            hf,
        )]));
    for f in &spec.features {
        if let FeatureKind::Image { .. } = f.kind {
            let bytes = ColumnPath::new(vec![f.name.clone(), "bytes".into()]);
            let path = ColumnPath::new(vec![f.name.clone(), "path".into()]);
            b = b
                .set_column_dictionary_enabled(bytes.clone(), false)
                .set_column_compression(bytes.clone(), Compression::UNCOMPRESSED)
                .set_column_statistics_enabled(bytes, EnabledStatistics::None)
                .set_column_dictionary_enabled(path, false);
        }
    }
    b.build()
}

impl DatasetWriter {
    /// Opens the next data file if none is open.
    pub(super) fn ensure_file(&mut self) -> Result<&mut DataFile> {
        if self.file.is_none() {
            let (chunk, file) = self.next_file;
            let rel = crate::dataset::data_file_path(chunk, file);
            let path = self.staging.join(&rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let f = File::create(&path).map_err(io_err(&path))?;
            let options = ArrowWriterOptions::new()
                .with_properties(self.props.clone())
                .with_page_store_factory(self.spill.clone());
            let writer = ArrowWriter::try_new_with_options(f, self.schema.clone(), options)
                .map_err(Error::parquet(&path))?;
            self.file = Some(DataFile {
                chunk,
                file,
                path,
                writer,
                kept_row_groups: 0,
            });
        }
        self.file
            .as_mut()
            .ok_or_else(|| Error::Internal("data file vanished".into()))
    }

    /// Moves the buffered rows into the encoder's in-progress row group.
    pub(super) fn encode_buffered(&mut self) -> Result<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let batch = self.take_batch()?;
        let file = self.ensure_file()?;
        file.writer
            .write(&batch)
            .map_err(Error::parquet(&file.path))
    }

    pub(super) fn flush_row_group(&mut self) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.writer.flush().map_err(Error::parquet(&f.path))?;
        }
        Ok(())
    }

    /// Writes the footer of the open data file, fsyncs it and moves on to the next file name.
    pub(super) fn close_file(&mut self) -> Result<()> {
        if let Some(mut f) = self.file.take() {
            f.writer.finish().map_err(Error::parquet(&f.path))?;
            f.writer.inner().sync_all().map_err(io_err(&f.path))?;
            self.data_files
                .push(crate::dataset::data_file_path(f.chunk, f.file));
            self.advance_file_name(f.chunk, f.file);
        }
        Ok(())
    }

    pub(super) fn advance_file_name(&mut self, chunk: usize, file: usize) {
        self.next_file = if file + 1 >= self.opts.chunks_size {
            (chunk + 1, 0)
        } else {
            (chunk, file + 1)
        };
    }

    /// Drops everything after the completed episodes from the open data file.
    pub(super) fn cut_back_file(&mut self) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let touched = f.writer.flushed_row_groups().len() > f.kept_row_groups
            || f.writer.in_progress_rows() > 0;
        if !touched {
            return Ok(());
        }
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        f.writer.sync().map_err(io_err(&f.path))?;
        let kept: Vec<RowGroupMetaData> =
            f.writer.flushed_row_groups()[..f.kept_row_groups].to_vec();
        drop(f.writer);
        if kept.is_empty() {
            // Only the aborted episode was in this file: remove it and reuse its name.
            fs::remove_file(&f.path).map_err(io_err(&f.path))?;
            return Ok(());
        }
        let tmp = f.path.with_extension("parquet.cut");
        let src = File::open(&f.path).map_err(io_err(&f.path))?;
        let dst = File::create(&tmp).map_err(io_err(&tmp))?;
        let aw = ArrowWriter::try_new(dst, self.schema.clone(), Some(self.props.clone()))
            .map_err(Error::parquet(&tmp))?;
        let (mut fw, _) = aw.into_serialized_writer().map_err(Error::parquet(&tmp))?;
        for rg in &kept {
            let mut rgw = fw.next_row_group().map_err(Error::parquet(&tmp))?;
            for col in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: col.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: col.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rgw.append_column(&src, close)
                    .map_err(Error::parquet(&tmp))?;
            }
            rgw.close().map_err(Error::parquet(&tmp))?;
        }
        fw.finish().map_err(Error::parquet(&tmp))?;
        fw.inner().sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &f.path).map_err(io_err(&f.path))?;
        // The cut file is complete; the next episode starts a new one.
        self.data_files
            .push(crate::dataset::data_file_path(f.chunk, f.file));
        self.advance_file_name(f.chunk, f.file);
        Ok(())
    }
}
