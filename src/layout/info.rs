//! `meta/info.json` of a v2.1 dataset as one serde type: written by [`super::to_v21`], read
//! back by append ([`super::V21Base`]) and by v2.1 → v3.0. Its keys differ from v3.0's
//! ([`crate::dataset::InfoJson`]: `total_videos`, `total_chunks`, per-episode path templates,
//! no file sizes); its `features` are the same entries, so they are the same type.
//! `validate_v21` keeps reading the file as plain JSON: it must report every broken key of a
//! file this type would refuse.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{V21, bad, pretty4};
use crate::dataset::DatasetSpec;
use crate::dataset::info::{InfoFeature, declared_spec, ordered};
use crate::error::{Error, Result};

/// The file, in lerobot 0.3.x's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct V21Info {
    pub(crate) codebase_version: String,
    pub(crate) robot_type: Option<String>,
    pub(crate) total_episodes: u64,
    pub(crate) total_frames: u64,
    pub(crate) total_tasks: u64,
    /// Episode MP4s: episodes × video features.
    pub(crate) total_videos: u64,
    /// `chunk-XXX` folders: episodes / `chunks_size`, rounded up.
    pub(crate) total_chunks: u64,
    /// Episodes per chunk folder ([`super::V21_CHUNKS_SIZE`]).
    pub(crate) chunks_size: u64,
    pub(crate) fps: u32,
    pub(crate) splits: BTreeMap<String, String>,
    /// [`super::V21_DATA_PATH`].
    pub(crate) data_path: String,
    /// [`super::V21_VIDEO_PATH`] with video features, null without.
    pub(crate) video_path: Option<String>,
    /// In column order, default columns last (as the v3.0 source declared them).
    #[serde(with = "ordered")]
    pub(crate) features: Vec<(String, InfoFeature)>,
}

/// Just the version of an `info.json` of either layout.
#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    codebase_version: Value,
}

/// `codebase_version` of an `info.json`'s `text` (null when absent).
fn version_of(path: &Path, text: &str) -> Result<Value> {
    serde_json::from_str::<Version>(text)
        .map(|v| v.codebase_version)
        .map_err(|e| bad(path, format!("json: {e}")))
}

/// `codebase_version` of `DATASET/meta/info.json` (null when absent).
pub(crate) fn read_version(dataset: &Path) -> Result<Value> {
    let p = dataset.join("meta/info.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    version_of(&p, &text)
}

impl V21Info {
    /// Reads `DATASET/meta/info.json`, which must say v2.1.
    pub(crate) fn read(dataset: &Path) -> Result<Self> {
        let p = dataset.join("meta/info.json");
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let version = version_of(&p, &text)?;
        if version != V21 {
            return Err(bad(
                &p,
                format!("codebase_version {version}, expected {V21}"),
            ));
        }
        serde_json::from_str(&text).map_err(|e| bad(&p, format!("not a v2.1 info.json: {e}")))
    }

    /// The text written: four-space indents, as lerobot's `write_json` writes it.
    pub(crate) fn to_text(&self) -> String {
        pretty4(self)
    }

    /// Names of the video features, in declaration order.
    pub(crate) fn video_keys(&self) -> Vec<String> {
        super::video_keys(&self.features)
    }

    /// The dataset spec the file declares (default columns left out), read as v3.0's.
    pub(crate) fn spec(&self, path: &Path) -> Result<DatasetSpec> {
        declared_spec(self.fps, self.robot_type.as_deref(), &self.features, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_back_to_the_same_file_in_lerobots_key_order() {
        let text = r#"{
    "codebase_version": "v2.1",
    "robot_type": null,
    "total_episodes": 2,
    "total_frames": 60,
    "total_tasks": 1,
    "total_videos": 2,
    "total_chunks": 1,
    "chunks_size": 1000,
    "fps": 30,
    "splits": {
        "train": "0:2"
    },
    "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    "features": {
        "observation.images.cam": {
            "dtype": "video",
            "shape": [
                4,
                4,
                3
            ],
            "names": [
                "height",
                "width",
                "channels"
            ],
            "info": {
                "video.codec": "h264",
                "video.fps": 30
            }
        },
        "index": {
            "dtype": "int64",
            "shape": [
                1
            ],
            "names": null
        }
    }
}
"#;
        let info: V21Info = serde_json::from_str(text).unwrap();
        assert_eq!(info.to_text(), text);
        assert_eq!(info.video_keys(), ["observation.images.cam"]);
        let spec = info.spec(Path::new("info.json")).unwrap();
        assert_eq!(spec.fps, 30);
        assert_eq!(spec.features.len(), 1);
    }

    #[test]
    fn a_v30_info_is_refused_by_its_version() {
        let dir = std::env::temp_dir().join(format!("v21info-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        std::fs::write(
            dir.join("meta/info.json"),
            r#"{"codebase_version": "v3.0", "fps": 30}"#,
        )
        .unwrap();
        let e = V21Info::read(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("codebase_version \"v3.0\", expected v2.1"),
            "{e}"
        );
    }
}
