//! The metadata files: `meta/info.json`, `meta/stats.json`, `meta/tasks.parquet` (with the
//! pandas index metadata lerobot needs) and the streamed `meta/episodes/…/file-000.parquet`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use super::stats::FeatureStats;
use super::{DEFAULT_COLUMNS, DatasetSpec, FeatureKind, STAT_KEYS};
use crate::error::{Error, Result};

/// Flush a row group of the episodes parquet once its encoded rows reach this many bytes:
/// 1 MiB (a row is a few KiB of stats, so memory stays flat however many episodes there are).
const EPISODES_ROW_GROUP_BYTES: usize = 1024 * 1024;

/// Writes a file fully and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

pub(crate) use super::info::{InfoTotals, ordered_json};

/// The text of `meta/info.json` for `spec` with these totals.
pub(crate) fn info_json(spec: &DatasetSpec, t: &InfoTotals) -> String {
    super::info::InfoJson::new(spec, t).to_text()
}

/// The text of `meta/stats.json`: one object per feature, in column order.
pub(crate) fn stats_json(stats: &[(String, FeatureStats)]) -> String {
    let entries: Vec<(String, Value)> = stats
        .iter()
        .map(|(k, s)| (k.clone(), s.to_json()))
        .collect();
    let mut s = ordered_json(&entries, 0);
    s.push('\n');
    s
}

/// pandas metadata marking `task` as the DataFrame index, as `DataFrame.to_parquet` writes it.
fn pandas_tasks_metadata() -> String {
    json!({
        "index_columns": ["task"],
        "column_indexes": [{
            "name": null, "field_name": null, "pandas_type": "unicode",
            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}
        }],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": null},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": null}
        ],
        "creator": {"library": "bag2dataset", "version": env!("CARGO_PKG_VERSION")},
        "pandas_version": "2.2.3"
    })
    .to_string()
}

/// Writes `meta/tasks.parquet` (task_index, task) with the pandas index metadata.
pub(crate) fn write_tasks(path: &Path, tasks: &[String]) -> Result<()> {
    let mut md = std::collections::HashMap::new();
    md.insert("pandas".to_string(), pandas_tasks_metadata());
    let schema = Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("task_index", DataType::Int64, true),
            Field::new("task", DataType::Utf8, true),
        ],
        md,
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..tasks.len() as i64)),
            Arc::new(StringArray::from_iter_values(tasks)),
        ],
    )
    .map_err(Error::arrow(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "pandas".into(),
            pandas_tasks_metadata(),
        )]))
        .build();
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(Error::parquet(path))?;
    w.write(&batch).map_err(Error::parquet(path))?;
    w.finish().map_err(Error::parquet(path))?;
    w.inner().sync_all().map_err(|e| Error::io(path, e))
}

/// One episode's row in the episodes parquet.
pub(crate) struct EpisodeRow<'a> {
    pub(crate) episode_index: i64,
    pub(crate) task: &'a str,
    pub(crate) length: i64,
    pub(crate) data_chunk: i64,
    pub(crate) data_file: i64,
    pub(crate) from_index: i64,
    pub(crate) to_index: i64,
    /// Per feature, in schema order (user features then defaults).
    pub(crate) stats: &'a [FeatureStats],
    /// Per video feature (feature index, where the episode is), in feature order.
    pub(crate) videos: &'a [(usize, super::video::VideoSpan)],
}

/// Streams episode rows into `meta/episodes/chunk-000/file-000.parquet`.
pub(crate) struct EpisodesWriter {
    path: std::path::PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    images: Vec<bool>,
}

fn list_field(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new_list_field(dt, true))
}

fn list_of(dt: DataType) -> DataType {
    DataType::List(list_field(dt))
}

/// Arrow type of a stats column: `list<double>`, `list<int64>` for `count`, and
/// `list<list<list<double>>>` (shape `[3,1,1]`) for image stats, as lerobot writes them.
fn stat_type(key: &str, image: bool) -> DataType {
    if key == "count" {
        list_of(DataType::Int64)
    } else if image {
        list_of(list_of(list_of(DataType::Float64)))
    } else {
        list_of(DataType::Float64)
    }
}

/// `datasets` feature JSON of a stats column type.
fn hf_type(dt: &DataType) -> Value {
    match dt {
        DataType::List(f) => json!({"feature": hf_type(f.data_type()), "_type": "List"}),
        DataType::Int64 => json!({"dtype": "int64", "_type": "Value"}),
        DataType::Float64 => json!({"dtype": "float64", "_type": "Value"}),
        _ => json!({"dtype": "string", "_type": "Value"}),
    }
}

/// Names of the stats-bearing features (user then defaults) and whether each is an image.
pub(crate) fn stats_features(spec: &DatasetSpec) -> Vec<(String, bool)> {
    spec.features
        .iter()
        .map(|f| (f.name.clone(), f.kind.image_size().is_some()))
        .chain(DEFAULT_COLUMNS.iter().map(|n| (n.to_string(), false)))
        .collect()
}

/// Arrow schema of the episodes parquet.
fn episodes_schema(spec: &DatasetSpec) -> SchemaRef {
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let mut fields = vec![
        int("episode_index"),
        Field::new("tasks", list_of(DataType::Utf8), true),
        int("length"),
        int("data/chunk_index"),
        int("data/file_index"),
        int("dataset_from_index"),
        int("dataset_to_index"),
    ];
    fields.extend(video_fields(spec));
    for (name, image) in stats_features(spec) {
        for key in STAT_KEYS {
            fields.push(Field::new(
                format!("stats/{name}/{key}"),
                stat_type(key, image),
                true,
            ));
        }
    }
    fields.push(int("meta/episodes/chunk_index"));
    fields.push(int("meta/episodes/file_index"));
    let hf: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| (f.name().clone(), hf_type(f.data_type())))
        .collect();
    let mut md = std::collections::HashMap::new();
    md.insert(
        super::schema::HUGGINGFACE_META_KEY.to_string(),
        json!({"info": {"features": hf}}).to_string(),
    );
    Arc::new(Schema::new_with_metadata(fields, md))
}

/// Names of the video features, in feature order.
fn video_keys(spec: &DatasetSpec) -> Vec<String> {
    spec.features
        .iter()
        .filter(|f| matches!(f.kind, FeatureKind::Video { .. }))
        .map(|f| f.name.clone())
        .collect()
}

/// `videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}` per video feature,
/// after the data columns (where lerobot puts them).
fn video_fields(spec: &DatasetSpec) -> Vec<Field> {
    video_keys(spec)
        .iter()
        .flat_map(|k| {
            [
                Field::new(format!("videos/{k}/chunk_index"), DataType::Int64, true),
                Field::new(format!("videos/{k}/file_index"), DataType::Int64, true),
                Field::new(
                    format!("videos/{k}/from_timestamp"),
                    DataType::Float64,
                    true,
                ),
                Field::new(format!("videos/{k}/to_timestamp"), DataType::Float64, true),
            ]
        })
        .collect()
}

/// A one-row `list<…>` column holding `values`, nested `[3,1,1]` for images.
fn stat_array(values: &[f64], image: bool) -> ArrayRef {
    let leaf: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
    if !image {
        return Arc::new(ListArray::new(
            list_field(DataType::Float64),
            OffsetBuffer::from_lengths([values.len()]),
            leaf,
            None,
        ));
    }
    let ones = vec![1usize; values.len()];
    let inner = ListArray::new(
        list_field(DataType::Float64),
        OffsetBuffer::from_lengths(ones.iter().copied()),
        leaf,
        None,
    );
    let mid = ListArray::new(
        list_field(list_of(DataType::Float64)),
        OffsetBuffer::from_lengths(ones),
        Arc::new(inner),
        None,
    );
    Arc::new(ListArray::new(
        list_field(list_of(list_of(DataType::Float64))),
        OffsetBuffer::from_lengths([values.len()]),
        Arc::new(mid),
        None,
    ))
}

impl EpisodesWriter {
    /// Opens the episodes parquet at `path` (its directory must exist).
    pub(crate) fn create(path: &Path, spec: &DatasetSpec) -> Result<Self> {
        let schema = episodes_schema(spec);
        let hf = schema.metadata()[super::schema::HUGGINGFACE_META_KEY].clone();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            // Dictionary encoders would pre-allocate tens of KiB for each of the many columns.
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(None)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                super::schema::HUGGINGFACE_META_KEY.into(),
                hf,
            )]))
            .build();
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(Error::parquet(path))?;
        Ok(EpisodesWriter {
            path: path.to_path_buf(),
            schema,
            writer: Some(writer),
            images: stats_features(spec).into_iter().map(|x| x.1).collect(),
        })
    }

    /// Appends one episode row.
    pub(crate) fn push(&mut self, row: &EpisodeRow<'_>) -> Result<()> {
        let path = self.path.clone();
        let int = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
        let mut cols: Vec<ArrayRef> = vec![
            int(row.episode_index),
            Arc::new(ListArray::new(
                list_field(DataType::Utf8),
                OffsetBuffer::from_lengths([1]),
                Arc::new(StringArray::from(vec![row.task])),
                None,
            )),
            int(row.length),
            int(row.data_chunk),
            int(row.data_file),
            int(row.from_index),
            int(row.to_index),
        ];
        let float = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
        for (_, span) in row.videos {
            cols.push(int(span.chunk as i64));
            cols.push(int(span.file as i64));
            cols.push(float(span.from_timestamp));
            cols.push(float(span.to_timestamp));
        }
        for (s, image) in row.stats.iter().zip(&self.images) {
            for key in STAT_KEYS {
                match s.get(key) {
                    Some(vals) => cols.push(stat_array(vals, *image)),
                    None => cols.push(Arc::new(ListArray::new(
                        list_field(DataType::Int64),
                        OffsetBuffer::from_lengths([1]),
                        Arc::new(Int64Array::from(vec![s.count as i64])),
                        None,
                    ))),
                }
            }
        }
        cols.push(int(0));
        cols.push(int(0));
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(Error::arrow(&path))?;
        let w = self.writer.as_mut().ok_or_else(|| Error::Dataset {
            path: path.clone(),
            what: "episodes writer already closed".into(),
        })?;
        w.write(&batch).map_err(Error::parquet(&path))?;
        if w.in_progress_size() >= EPISODES_ROW_GROUP_BYTES {
            w.flush().map_err(Error::parquet(&path))?;
        }
        Ok(())
    }

    /// Writes the footer and fsyncs.
    pub(crate) fn close(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.finish().map_err(Error::parquet(&self.path))?;
            w.inner().sync_all().map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Bytes buffered by the encoder.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, ArrowWriter::memory_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_json_keeps_order_and_parses() {
        let e = vec![
            ("b".to_string(), json!(1)),
            ("a".to_string(), json!([1, 2])),
        ];
        let s = ordered_json(&e, 0);
        assert!(s.find("\"b\"").unwrap() < s.find("\"a\"").unwrap());
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], json!([1, 2]));
    }

    #[test]
    fn image_stats_column_is_3_1_1() {
        let a = stat_array(&[0.1, 0.2, 0.3], true);
        assert_eq!(a.data_type(), &stat_type("mean", true));
        assert_eq!(a.len(), 1);
    }
}
