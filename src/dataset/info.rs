//! `meta/info.json` of a v3.0 dataset as one serde type: written by the writer, read back by
//! append, merge and `convert-format`, and checked by `validate`. One reading of the file, so
//! the three cannot disagree on what it says.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use super::{CODEBASE_VERSION, DATA_PATH_TEMPLATE, DEFAULT_COLUMNS, DatasetSpec};
use super::{FeatureKind, FeatureSpec};
use crate::error::{Error, Result};

/// The file, in lerobot's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InfoJson {
    pub(crate) codebase_version: String,
    pub(crate) robot_type: Option<String>,
    pub(crate) total_episodes: u64,
    pub(crate) total_frames: u64,
    pub(crate) total_tasks: u64,
    pub(crate) chunks_size: u64,
    /// Always written; absent from v2.1 datasets, whose spec is read through this type too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data_files_size_in_mb: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) video_files_size_in_mb: Option<Number>,
    pub(crate) fps: u32,
    pub(crate) splits: BTreeMap<String, String>,
    pub(crate) data_path: String,
    pub(crate) video_path: Option<String>,
    /// In column order (the order users see), default columns last.
    #[serde(with = "ordered")]
    pub(crate) features: Vec<(String, InfoFeature)>,
}

/// One entry of `features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InfoFeature {
    pub(crate) dtype: String,
    pub(crate) shape: Vec<u64>,
    /// lerobot requires the key (null allowed); an absent key is kept apart for `validate`.
    #[serde(default, skip_serializing_if = "Names::is_absent")]
    pub(crate) names: Names,
    /// The video block (`video.codec`, `video.fps`, ...), for video features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) info: Option<serde_json::Map<String, Value>>,
}

/// `names` of a feature: absent, null, or a list (anything else is kept for `validate`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Names {
    #[default]
    Absent,
    Null,
    List(Vec<String>),
    Other(Value),
}

impl Names {
    fn is_absent(&self) -> bool {
        matches!(self, Names::Absent)
    }
}

impl Serialize for Names {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Names::Absent | Names::Null => s.serialize_none(),
            Names::List(v) => v.serialize(s),
            Names::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Names::Null,
            Value::Array(a) if a.iter().all(Value::is_string) => Names::List(
                a.into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            other => Names::Other(other),
        })
    }
}

/// Writes `entries` as pretty JSON in exactly the given key order (`info.json`'s feature order
/// is the camera/column order users see; the output bytes must not depend on how a map was
/// built).
pub(crate) fn ordered_json(entries: &[(String, Value)], indent: usize) -> String {
    let pad = " ".repeat(indent + 2);
    let mut s = String::from("{\n");
    for (i, (k, v)) in entries.iter().enumerate() {
        let v = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
        let comma = if i + 1 < entries.len() { "," } else { "" };
        s.push_str(&format!("{pad}{}: {v}{comma}\n", json!(k)));
    }
    s.push_str(&" ".repeat(indent));
    s.push('}');
    s
}

/// `features` as a JSON object whose key order is kept (also v2.1's, in `crate::layout`).
pub(crate) mod ordered {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &[(String, InfoFeature)],
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(v.iter().map(|(k, f)| (k, f)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<(String, InfoFeature)>, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Vec<(String, InfoFeature)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of features")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, InfoFeature>()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries)
    }
}

/// What `info.json` says beyond the spec.
pub(crate) struct InfoTotals {
    pub(crate) total_episodes: u64,
    pub(crate) total_frames: u64,
    pub(crate) total_tasks: u64,
    pub(crate) chunks_size: usize,
    pub(crate) data_files_size_in_mb: Number,
}

impl InfoJson {
    /// The file for `spec` with these totals.
    pub(crate) fn new(spec: &DatasetSpec, t: &InfoTotals) -> Self {
        let mut features: Vec<(String, InfoFeature)> = spec
            .features
            .iter()
            .map(|f| (f.name.clone(), feature_of(f, spec.fps)))
            .collect();
        for n in DEFAULT_COLUMNS {
            let dtype = if n == "timestamp" { "float32" } else { "int64" };
            features.push((
                n.to_string(),
                InfoFeature {
                    dtype: dtype.into(),
                    shape: vec![1],
                    names: Names::Null,
                    info: None,
                },
            ));
        }
        InfoJson {
            codebase_version: CODEBASE_VERSION.into(),
            robot_type: spec.robot_type.clone(),
            total_episodes: t.total_episodes,
            total_frames: t.total_frames,
            total_tasks: t.total_tasks,
            chunks_size: t.chunks_size as u64,
            data_files_size_in_mb: Some(t.data_files_size_in_mb.clone()),
            video_files_size_in_mb: Some(Number::from(super::VIDEO_FILES_SIZE_IN_MB)),
            fps: spec.fps,
            splits: BTreeMap::from([("train".into(), format!("0:{}", t.total_episodes))]),
            data_path: DATA_PATH_TEMPLATE.into(),
            video_path: super::video::VideoSet::needed(spec)
                .then(|| super::VIDEO_PATH_TEMPLATE.to_string()),
            features,
        }
    }

    /// Parses the text of an `info.json`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Dataset {
            path: path.to_path_buf(),
            what: format!("not a v3.0 info.json: {e}"),
        })
    }

    /// Reads `DATASET/meta/info.json`.
    pub(crate) fn read(dataset: &Path) -> Result<Self> {
        let p = dataset.join("meta/info.json");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        Self::parse(&p, &text)
    }

    /// The text written: top-level keys one per line, each feature on its own line.
    pub(crate) fn to_text(&self) -> String {
        let top = match serde_json::to_value(self) {
            Ok(Value::Object(top)) => top,
            // Not reached (the struct serializes to an object); still valid JSON if it were.
            _ => return serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
        };
        let mut s = String::from("{\n");
        let n = top.len();
        for (i, (k, v)) in top.into_iter().enumerate() {
            let v = match v {
                Value::Object(features) if k == "features" => {
                    let entries: Vec<(String, Value)> = features.into_iter().collect();
                    ordered_json(&entries, 2)
                }
                v => serde_json::to_string(&v).unwrap_or_else(|_| "null".into()),
            };
            let comma = if i + 1 < n { "," } else { "" };
            s.push_str(&format!("  {}: {v}{comma}\n", json!(k)));
        }
        s.push_str("}\n");
        s
    }

    /// The dataset spec the file declares (default columns left out).
    pub(crate) fn spec(&self, path: &Path) -> Result<DatasetSpec> {
        declared_spec(self.fps, self.robot_type.as_deref(), &self.features, path)
    }
}

/// The dataset spec that an `info.json`'s `fps`, `robot_type` and `features` declare (default
/// columns left out). v2.1's `info.json` (`crate::layout`) declares it with the same entries.
pub(crate) fn declared_spec(
    fps: u32,
    robot_type: Option<&str>,
    info_features: &[(String, InfoFeature)],
    path: &Path,
) -> Result<DatasetSpec> {
    let bad = |what: String| Error::Dataset {
        path: path.to_path_buf(),
        what,
    };
    if fps == 0 {
        return Err(bad("fps must be a positive integer".into()));
    }
    let mut features = Vec::new();
    for (name, f) in info_features {
        if DEFAULT_COLUMNS.contains(&name.as_str()) {
            continue;
        }
        let kind = match (f.dtype.as_str(), f.shape.as_slice()) {
            ("image", [h, w, c]) => FeatureKind::Image {
                height: *h as u32,
                width: *w as u32,
                channels: *c as u32,
            },
            ("video", [h, w, c]) => FeatureKind::Video {
                height: *h as u32,
                width: *w as u32,
                channels: *c as u32,
                codec: super::video::VideoCodec::parse(
                    f.info
                        .as_ref()
                        .and_then(|i| i.get("video.codec"))
                        .and_then(Value::as_str)
                        .unwrap_or("av1"),
                )?,
            },
            ("float32", [len]) => FeatureKind::Vector {
                len: *len as usize,
                names: match &f.names {
                    Names::List(n) => Some(n.clone()),
                    _ => None,
                },
            },
            _ => {
                return Err(bad(format!(
                    "feature {name}: dtype {} shape {:?} is not one this tool writes",
                    f.dtype, f.shape
                )));
            }
        };
        features.push(FeatureSpec {
            name: name.clone(),
            kind,
        });
    }
    Ok(DatasetSpec {
        fps,
        robot_type: robot_type.map(str::to_string),
        features,
    })
}

/// The `features` entry of one of the spec's features.
fn feature_of(f: &FeatureSpec, fps: u32) -> InfoFeature {
    let visual = |dtype: &str, h: u32, w: u32, c: u32| InfoFeature {
        dtype: dtype.into(),
        shape: vec![h.into(), w.into(), c.into()],
        names: Names::List(vec!["height".into(), "width".into(), "channels".into()]),
        info: None,
    };
    match &f.kind {
        FeatureKind::Vector { len, names } => InfoFeature {
            dtype: "float32".into(),
            shape: vec![*len as u64],
            names: match names {
                Some(n) => Names::List(n.clone()),
                None => Names::Null,
            },
            info: None,
        },
        FeatureKind::Image {
            height,
            width,
            channels,
        } => visual("image", *height, *width, *channels),
        FeatureKind::Video {
            height,
            width,
            channels,
            codec,
        } => {
            let mut v = visual("video", *height, *width, *channels);
            if let Value::Object(block) = super::video::info_block(*codec, fps, *height, *width) {
                v.info = Some(block);
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DatasetSpec {
        DatasetSpec {
            fps: 30,
            robot_type: Some("kuavo".into()),
            features: vec![
                FeatureSpec {
                    name: "observation.state".into(),
                    kind: FeatureKind::Vector {
                        len: 2,
                        names: Some(vec!["a".into(), "b".into()]),
                    },
                },
                FeatureSpec {
                    name: "observation.images.cam".into(),
                    kind: FeatureKind::Video {
                        height: 480,
                        width: 640,
                        channels: 3,
                        codec: super::super::video::VideoCodec::Av1,
                    },
                },
            ],
        }
    }

    #[test]
    fn written_text_reads_back_to_the_same_file_and_spec() {
        let info = InfoJson::new(
            &spec(),
            &InfoTotals {
                total_episodes: 2,
                total_frames: 60,
                total_tasks: 1,
                chunks_size: 1000,
                data_files_size_in_mb: Number::from(100),
            },
        );
        let text = info.to_text();
        let back = InfoJson::parse(Path::new("info.json"), &text).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.spec(Path::new("x")).unwrap(), spec());
        // Key order is lerobot's, features in column order, one feature per line.
        assert!(text.starts_with("{\n  \"codebase_version\": \"v3.0\",\n  \"robot_type\""));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("    \"observation.state\": {\"dtype\""))
        );
        assert_eq!(back.features.last().unwrap().0, "task_index");
        assert_eq!(back.splits["train"], "0:2");
    }

    #[test]
    fn names_keep_absent_apart_from_null() {
        let f: InfoFeature = serde_json::from_str(r#"{"dtype":"int64","shape":[1]}"#).unwrap();
        assert_eq!(f.names, Names::Absent);
        let f: InfoFeature =
            serde_json::from_str(r#"{"dtype":"int64","shape":[1],"names":null}"#).unwrap();
        assert_eq!(f.names, Names::Null);
    }
}
