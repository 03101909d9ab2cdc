//! Feature spec → Arrow schema of the data files, the `features` object of `info.json`, and the
//! `huggingface` schema metadata that `datasets.Features.arrow_schema` would write.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{Value, json};

use super::{DEFAULT_COLUMNS, DatasetSpec, FeatureKind};
use crate::error::{Error, Result};

/// Schema metadata key read by `datasets` (and hence the HF viewer and v2.1 loader).
pub(crate) const HUGGINGFACE_META_KEY: &str = "huggingface";

/// Checks a spec before anything is written, so a bad spec fails early with its feature named.
pub(crate) fn check_spec(spec: &DatasetSpec) -> Result<()> {
    if spec.fps == 0 {
        return Err(Error::Config("dataset fps must be > 0".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &spec.features {
        let bad = |what: String| Error::Config(format!("feature {:?}: {what}", f.name));
        if f.name.is_empty() || f.name.contains('/') {
            return Err(bad("name must be non-empty and contain no '/'".into()));
        }
        if DEFAULT_COLUMNS.contains(&f.name.as_str()) {
            return Err(bad("name clashes with a default column".into()));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(bad("declared twice".into()));
        }
        match &f.kind {
            FeatureKind::Vector { len, names } => {
                if *len == 0 {
                    return Err(bad("vector length must be > 0".into()));
                }
                if let Some(n) = names
                    && n.len() != *len
                {
                    return Err(bad(format!("{} names for length {len}", n.len())));
                }
            }
            FeatureKind::Image {
                height,
                width,
                channels,
            } => {
                if *height == 0 || *width == 0 || !matches!(channels, 1 | 3 | 4) {
                    return Err(bad(format!(
                        "image shape [{height}, {width}, {channels}] is not [H>0, W>0, 1|3|4]"
                    )));
                }
            }
            FeatureKind::Video {
                height,
                width,
                channels,
                ..
            } => {
                if *height == 0 || *width == 0 || *channels != 3 {
                    return Err(bad(format!(
                        "video shape [{height}, {width}, {channels}] is not [H>0, W>0, 3]"
                    )));
                }
            }
        }
        // lerobot's stats check expects [3,1,1] for any key containing "image".
        if matches!(f.kind, FeatureKind::Vector { .. }) && f.name.contains("image") {
            return Err(bad(
                "a vector feature name must not contain \"image\": lerobot would expect [3,1,1] stats"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// The Arrow struct fields of an image column: `struct<bytes: binary, path: string>`.
pub(crate) fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

/// The Arrow type of a user feature column (video features have none: `Null`).
fn feature_type(kind: &FeatureKind) -> DataType {
    match kind {
        FeatureKind::Vector { len: 1, .. } => DataType::Float32,
        FeatureKind::Vector { len, .. } => DataType::FixedSizeList(
            Arc::new(Field::new_list_field(DataType::Float32, true)),
            *len as i32,
        ),
        FeatureKind::Image { .. } => DataType::Struct(image_fields()),
        FeatureKind::Video { .. } => DataType::Null,
    }
}

/// The Arrow type of a default column.
fn default_type(name: &str) -> DataType {
    if name == "timestamp" {
        DataType::Float32
    } else {
        DataType::Int64
    }
}

/// Arrow schema of the data files: user features then the five defaults, with the
/// `huggingface` metadata attached.
pub(crate) fn data_schema(spec: &DatasetSpec) -> SchemaRef {
    let mut fields: Vec<Field> = spec
        .features
        .iter()
        .filter(|f| !matches!(f.kind, FeatureKind::Video { .. }))
        .map(|f| Field::new(&f.name, feature_type(&f.kind), true))
        .collect();
    fields.extend(
        DEFAULT_COLUMNS
            .iter()
            .map(|n| Field::new(*n, default_type(n), true)),
    );
    let mut meta = HashMap::new();
    meta.insert(HUGGINGFACE_META_KEY.to_string(), huggingface_metadata(spec));
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// Parquet leaf columns of the data files: one per vector feature, two per image feature
/// (`bytes`, `path`), none for video features, and the five defaults.
pub(crate) fn leaf_columns(spec: &DatasetSpec) -> usize {
    let features: usize = spec
        .features
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Vector { .. } => 1,
            FeatureKind::Image { .. } => 2,
            FeatureKind::Video { .. } => 0,
        })
        .sum();
    features + DEFAULT_COLUMNS.len()
}

/// The `huggingface` metadata value: `{"info": {"features": {...}}}` in `datasets` 4 syntax.
fn huggingface_metadata(spec: &DatasetSpec) -> String {
    let mut feats = serde_json::Map::new();
    for f in &spec.features {
        let v = match &f.kind {
            FeatureKind::Vector { len: 1, .. } => json!({"dtype": "float32", "_type": "Value"}),
            FeatureKind::Vector { len, .. } => json!({
                "feature": {"dtype": "float32", "_type": "Value"},
                "length": len,
                "_type": "List"
            }),
            FeatureKind::Image { .. } => json!({"_type": "Image"}),
            // Not a column (lerobot's get_hf_features_from_features skips videos).
            FeatureKind::Video { .. } => continue,
        };
        feats.insert(f.name.clone(), v);
    }
    for n in DEFAULT_COLUMNS {
        let dtype = if n == "timestamp" { "float32" } else { "int64" };
        feats.insert(n.to_string(), json!({"dtype": dtype, "_type": "Value"}));
    }
    json!({"info": {"features": Value::Object(feats)}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::FeatureSpec;

    fn spec() -> DatasetSpec {
        DatasetSpec {
            fps: 10,
            robot_type: None,
            features: vec![
                FeatureSpec {
                    name: "observation.state".into(),
                    kind: FeatureKind::Vector {
                        len: 3,
                        names: None,
                    },
                },
                FeatureSpec {
                    name: "observation.gripper".into(),
                    kind: FeatureKind::Vector {
                        len: 1,
                        names: None,
                    },
                },
                FeatureSpec {
                    name: "observation.images.head".into(),
                    kind: FeatureKind::Image {
                        height: 4,
                        width: 6,
                        channels: 3,
                    },
                },
            ],
        }
    }

    #[test]
    fn schema_has_features_then_defaults() {
        let s = data_schema(&spec());
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "observation.state",
                "observation.gripper",
                "observation.images.head",
                "timestamp",
                "frame_index",
                "episode_index",
                "index",
                "task_index"
            ]
        );
        assert!(matches!(
            s.field(0).data_type(),
            DataType::FixedSizeList(_, 3)
        ));
        assert_eq!(s.field(1).data_type(), &DataType::Float32);
        let hf: Value = serde_json::from_str(&s.metadata()[HUGGINGFACE_META_KEY]).unwrap();
        assert_eq!(
            hf["info"]["features"]["observation.state"]["length"],
            json!(3)
        );
        assert_eq!(
            hf["info"]["features"]["observation.images.head"]["_type"],
            "Image"
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        let mut s = spec();
        s.features[0].name = "a/b".into();
        assert!(check_spec(&s).is_err());
        let mut s = spec();
        s.features[1].name = "index".into();
        assert!(check_spec(&s).is_err());
        let mut s = spec();
        s.fps = 0;
        assert!(check_spec(&s).is_err());
        assert!(check_spec(&spec()).is_ok());
    }
}
