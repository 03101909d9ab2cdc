//! Raw rows waiting for the Parquet encoder: one buffer per column (vectors, image bytes and
//! paths, nothing for video features), the five default columns, per-feature statistics of the
//! episode in progress, and the batch handed to the encoder.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, FixedSizeListArray, Float32Array, Int64Array, StringBuilder,
    StructArray,
};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::dataset::schema::{self};
use crate::dataset::stats::{self, ImageStats, VectorStats};
use crate::dataset::{DatasetSpec, FeatureKind, FeatureValue, Frame};
use crate::error::{Error, Result};

/// Bytes of the five default columns per row (f32 + 4 × i64).
pub(super) const DEFAULT_ROW_BYTES: usize = 4 + 4 * 8;

/// Value of a default column at a frame of the episode (for its exact statistics).
pub(super) type ColumnValue = Box<dyn Fn(u64) -> f64>;

/// Raw rows not yet handed to the encoder, one buffer per column.
pub(super) enum ColumnBuf {
    Vector {
        len: usize,
        values: Vec<f32>,
    },
    Image {
        bytes: BinaryBuilder,
        paths: StringBuilder,
    },
    /// A video feature: no column; its frames go to the encoders.
    Video,
}

#[derive(Default)]
pub(super) struct DefaultBufs {
    pub(super) timestamp: Vec<f32>,
    pub(super) frame_index: Vec<i64>,
    pub(super) episode_index: Vec<i64>,
    pub(super) index: Vec<i64>,
    pub(super) task_index: Vec<i64>,
}

/// Per-feature statistics of the episode in progress.
pub(super) enum FeatureAcc {
    Vector(VectorStats),
    Image(ImageStats),
}

pub(super) fn new_columns(spec: &DatasetSpec) -> Vec<ColumnBuf> {
    spec.features
        .iter()
        .map(|f| match &f.kind {
            FeatureKind::Vector { len, .. } => ColumnBuf::Vector {
                len: *len,
                values: Vec::new(),
            },
            FeatureKind::Image { .. } => ColumnBuf::Image {
                bytes: BinaryBuilder::new(),
                paths: StringBuilder::new(),
            },
            FeatureKind::Video { .. } => ColumnBuf::Video,
        })
        .collect()
}

impl DatasetWriter {
    /// Checks a frame against the spec without changing any state.
    pub(super) fn check_frame(&self, ep: &Episode, frame: &Frame) -> Result<()> {
        let at =
            |what: String| self.err(format!("episode {} frame {}: {what}", ep.index, ep.frames));
        if frame.values.len() != self.spec.features.len() {
            return Err(at(format!(
                "{} values for {} features",
                frame.values.len(),
                self.spec.features.len()
            )));
        }
        for (f, v) in self.spec.features.iter().zip(&frame.values) {
            match (&f.kind, v) {
                // A copied episode's video comes as a segment, not as frames.
                (FeatureKind::Video { .. }, _) if ep.copied => {}
                (FeatureKind::Vector { len, .. }, FeatureValue::Vector(x)) => {
                    if x.len() != *len {
                        return Err(at(format!(
                            "feature {}: {} values, expected {len}",
                            f.name,
                            x.len()
                        )));
                    }
                    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                        return Err(at(format!(
                            "feature {}: element {i} is {} (stats need finite values)",
                            f.name, x[i]
                        )));
                    }
                }
                (
                    FeatureKind::Image { height, width, .. }
                    | FeatureKind::Video { height, width, .. },
                    FeatureValue::Image { bytes, format },
                ) => {
                    let (w, h) = stats::image_dimensions(bytes, *format)
                        .map_err(|e| at(format!("feature {}: {e}", f.name)))?;
                    if (h, w) != (*height, *width) {
                        return Err(at(format!(
                            "feature {}: image is {h}x{w} (HxW), declared {height}x{width}",
                            f.name
                        )));
                    }
                }
                _ => {
                    return Err(at(format!(
                        "feature {}: value kind does not match the declared feature",
                        f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Builds a record batch from the buffers and empties them.
    pub(super) fn take_batch(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let out = self.out.clone();
        let arrow_err = Error::arrow(&out);
        for col in &mut self.columns {
            arrays.push(match col {
                ColumnBuf::Video => continue,
                ColumnBuf::Vector { len, values } => {
                    let values = Float32Array::from(std::mem::take(values));
                    if *len == 1 {
                        Arc::new(values)
                    } else {
                        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
                        Arc::new(
                            FixedSizeListArray::try_new(item, *len as i32, Arc::new(values), None)
                                .map_err(&arrow_err)?,
                        )
                    }
                }
                ColumnBuf::Image { bytes, paths } => Arc::new(
                    StructArray::try_new(
                        schema::image_fields(),
                        vec![Arc::new(bytes.finish()), Arc::new(paths.finish())],
                        None,
                    )
                    .map_err(&arrow_err)?,
                ),
            });
        }
        let d = std::mem::take(&mut self.defaults);
        arrays.push(Arc::new(Float32Array::from(d.timestamp)));
        arrays.push(Arc::new(Int64Array::from(d.frame_index)));
        arrays.push(Arc::new(Int64Array::from(d.episode_index)));
        arrays.push(Arc::new(Int64Array::from(d.index)));
        arrays.push(Arc::new(Int64Array::from(d.task_index)));
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(arrow_err)
    }
}
