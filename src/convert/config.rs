//! The conversion configuration: which topics and fields become which dataset features, the
//! timeline, fps, time source, tolerance and trimming. Read from TOML (`--config`) or chosen
//! from the bag (zero-config, see [`super::mapping`]) and printable back as TOML.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default staleness limit for matching a feature to a timeline tick, in milliseconds.
pub(crate) const DEFAULT_TOLERANCE_MS: f64 = 50.0;

/// Which clock aligns messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TimeSource {
    /// The bag's record (receive) time, like the Kuavo converter.
    #[default]
    Record,
    /// The message's `header.stamp`.
    Header,
}

pub(crate) use crate::align::Policy;

/// How a camera feature is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Storage {
    /// Encoded images (JPEG/PNG) in the data parquet (`dtype: "image"`).
    #[default]
    Image,
    /// MP4 video files under `videos/` (`dtype: "video"`), encoded by ffmpeg.
    Video,
}

/// Video encoding settings (the `[video]` table); unset values take lerobot's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VideoConfig {
    /// `av1` (libsvtav1, default), `h264` (libx264) or `hevc` (libx265).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) codec: Option<String>,
    /// Constant rate factor; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crf: Option<u32>,
    /// Keyframe interval in frames; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gop: Option<u32>,
}

impl VideoConfig {
    /// The codec, checked.
    pub(crate) fn codec(&self) -> Result<crate::dataset::video::VideoCodec> {
        match &self.codec {
            Some(c) => crate::dataset::video::VideoCodec::parse(c),
            None => Ok(crate::dataset::video::VideoCodec::default()),
        }
    }

    /// The writer's video options.
    pub(crate) fn options(&self) -> crate::dataset::video::VideoOptions {
        let mut o = crate::dataset::video::VideoOptions::default();
        if let Some(crf) = self.crf {
            o.crf = crf;
        }
        if let Some(gop) = self.gop {
            o.gop = gop;
        }
        o
    }
}

/// One source of a feature: a field of a topic's messages, optionally sliced and scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    pub(crate) topic: String,
    /// Dotted field path (`joint_data.joint_q`, `position`, `pose.position.x`); empty or absent
    /// for images (the whole message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// Half-open index range into an array field, `"12..26"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<String>,
    /// Multiplier applied to the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scale: Option<f64>,
}

impl Source {
    /// The parsed `range`, if any.
    pub(crate) fn index_range(&self) -> Result<Option<(usize, usize)>> {
        let Some(r) = &self.range else {
            return Ok(None);
        };
        let bad = || {
            Error::Config(format!(
                "range '{r}' of topic {} is not of the form 'A..B'",
                self.topic
            ))
        };
        let (a, b) = r.split_once("..").ok_or_else(bad)?;
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if b <= a {
            return Err(Error::Config(format!(
                "range '{r}' of topic {} is empty",
                self.topic
            )));
        }
        Ok(Some((a, b)))
    }
}

/// One dataset feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeatureConfig {
    /// Feature key, e.g. `observation.state`, `action`, `observation.images.head`.
    pub(crate) name: String,
    /// Shorthand for a single source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<f64>,
    /// Several sources concatenated into one vector (instead of `topic`/`field`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<Source>,
    /// Names of the vector's elements (e.g. joint names); default: from the message (JointState
    /// `name`) or `<feature>_<i>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<Policy>,
    /// Images only: store them resized to `[height, width]` (decoded and encoded again);
    /// default: CompressedImage bytes pass through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resize: Option<[u32; 2]>,
    /// Staleness limit for this feature in ms (default: the dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tolerance_ms: Option<f64>,
    /// Camera features only: `image` or `video` (default: the dataset's `storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) storage: Option<Storage>,
}

impl FeatureConfig {
    /// A feature with one source and every option at its default.
    pub(crate) fn single(name: impl Into<String>, topic: &str, field: Option<&str>) -> Self {
        FeatureConfig {
            name: name.into(),
            topic: Some(topic.to_string()),
            field: field.map(str::to_string),
            range: None,
            scale: None,
            sources: Vec::new(),
            names: None,
            policy: None,
            resize: None,
            tolerance_ms: None,
            storage: None,
        }
    }

    /// The feature's sources, whichever way they were written.
    pub(crate) fn all_sources(&self) -> Result<Vec<Source>> {
        match (&self.topic, self.sources.is_empty()) {
            (Some(topic), true) => Ok(vec![Source {
                topic: topic.clone(),
                field: self.field.clone(),
                range: self.range.clone(),
                scale: self.scale,
            }]),
            (None, false) => Ok(self.sources.clone()),
            (Some(_), false) => Err(Error::Config(format!(
                "feature '{}' sets both `topic` and `sources`; use one",
                self.name
            ))),
            (None, true) => Err(Error::Config(format!(
                "feature '{}' has no `topic` and no `sources`",
                self.name
            ))),
        }
    }
}

/// The whole conversion configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertConfig {
    /// Output frame rate; default: the timeline topic's measured rate, rounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// The topic whose messages make the timeline; default: the busiest camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeline: Option<String>,
    #[serde(default)]
    pub(crate) time_source: TimeSource,
    #[serde(default = "default_tolerance")]
    pub(crate) tolerance_ms: f64,
    /// Default policy for features that do not set one.
    #[serde(default)]
    pub(crate) policy: Policy,
    /// Frames dropped at the start of each episode.
    #[serde(default)]
    pub(crate) trim_start: usize,
    /// Frames dropped at the end of each episode.
    #[serde(default)]
    pub(crate) trim_end: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) robot_type: Option<String>,
    /// Task text of every episode (a `<bag>.task.txt` sidecar file overrides it per bag).
    #[serde(default = "default_task")]
    pub(crate) task: String,
    /// Damaged data (a chunk that does not decompress, a record whose sizes lie, a message
    /// that does not match its definition) stops the bag instead of being skipped with a
    /// warning and counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) strict: bool,
    /// Default storage of camera features (`image`, or `video` as with `--video`).
    #[serde(default, skip_serializing_if = "is_default_storage")]
    pub(crate) storage: Storage,
    /// Video encoding settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) video: Option<VideoConfig>,
    /// Dataset layout written: `v3.0` (default) or `v2.1` (as `--format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<String>,
    pub(crate) features: Vec<FeatureConfig>,
}

fn is_default_storage(s: &Storage) -> bool {
    *s == Storage::Image
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE_MS
}

fn default_task() -> String {
    "default task".into()
}

impl ConvertConfig {
    /// Parses and checks a TOML config.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: ConvertConfig = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim_end())))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The config as TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The storage of feature `f` (its own, else the dataset's).
    pub(crate) fn storage_of(&self, f: &FeatureConfig) -> Storage {
        f.storage.unwrap_or(self.storage)
    }

    /// Whether any feature may be stored as video.
    pub(crate) fn wants_video(&self) -> bool {
        self.features
            .iter()
            .any(|f| self.storage_of(f) == Storage::Video)
    }

    /// The video settings (defaults when there is no `[video]` table).
    pub(crate) fn video_config(&self) -> VideoConfig {
        self.video.clone().unwrap_or_default()
    }

    /// Checks what can be checked without a bag.
    pub(crate) fn check(&self) -> Result<()> {
        let v = self.video_config();
        v.codec()?;
        if v.gop == Some(0) {
            return Err(Error::Config("video gop must be at least 1".into()));
        }
        if v.crf.is_some_and(|c| c > 63) {
            return Err(Error::Config("video crf must be 0..=63".into()));
        }
        if self.features.is_empty() {
            return Err(Error::Config("no features are configured".into()));
        }
        if self.fps == Some(0) {
            return Err(Error::Config("fps must be greater than 0".into()));
        }
        if !(self.tolerance_ms.is_finite() && self.tolerance_ms > 0.0) {
            return Err(Error::Config(format!(
                "tolerance_ms must be > 0 (got {})",
                self.tolerance_ms
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if f.name.is_empty() || f.name.contains('/') {
                return Err(Error::Config(format!(
                    "feature name '{}' is empty or contains '/' (LeRobot names use dots)",
                    f.name
                )));
            }
            if [
                "timestamp",
                "frame_index",
                "episode_index",
                "index",
                "task_index",
            ]
            .contains(&f.name.as_str())
            {
                return Err(Error::Config(format!(
                    "feature name '{}' is reserved by LeRobot",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(Error::Config(format!(
                    "feature '{}' is defined twice",
                    f.name
                )));
            }
            for s in f.all_sources()? {
                s.index_range()?;
            }
            if f.resize
                .is_some_and(|[h, w]| h == 0 || w == 0 || h > 16384 || w > 16384)
            {
                return Err(Error::Config(format!(
                    "feature '{}': resize must be [height, width] within 1..=16384",
                    f.name
                )));
            }
            if let Some(t) = f.tolerance_ms
                && !(t.is_finite() && t > 0.0)
            {
                return Err(Error::Config(format!(
                    "feature '{}': tolerance_ms must be > 0",
                    f.name
                )));
            }
        }
        Ok(())
    }
}

/// The first setting on which two configs (TOML texts, as conversion logs store them) differ,
/// in a user's words: `timeline is "/cam_r" in S2, "/cam_h" in S1`; features are named by their
/// `name`. `None` when they are equal. `here` / `there` name the two sides.
pub(crate) fn config_difference(a: &str, b: &str, here: &str, there: &str) -> Option<String> {
    let parse = |t: &str| t.parse::<toml::Table>().ok().map(toml::Value::Table);
    let (Some(x), Some(y)) = (parse(a), parse(b)) else {
        return (a != b).then(|| format!("the config in {here} or {there} does not parse"));
    };
    first_value_difference(&x, &y, "").map(|(key, vx, vy)| match (vx, vy) {
        (Some(vx), Some(vy)) => format!("{key} is {vx} in {here}, {vy} in {there}"),
        (Some(vx), None) => format!("{key} is {vx} in {here} and not set in {there}"),
        (None, Some(vy)) => format!("{key} is not set in {here} and {vy} in {there}"),
        (None, None) => format!("{key} differs between {here} and {there}"),
    })
}

/// Depth-first first difference: the key path and both values (`None` = absent).
fn first_value_difference(
    a: &toml::Value,
    b: &toml::Value,
    path: &str,
) -> Option<(String, Option<String>, Option<String>)> {
    use toml::Value;
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Table(x), Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            // `features` last: a changed timeline or fps says more than the feature it moved.
            keys.sort_by_key(|k| *k == "features");
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(vx), Some(vy)) => first_value_difference(vx, vy, &join(k)),
                (vx, vy) => Some((join(k), vx.map(short), vy.map(short))),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            let label = |v: &Value, i: usize| match v.get("name").and_then(Value::as_str) {
                Some(n) => format!("{path}[{n:?}]"),
                None => format!("{path}[{i}]"),
            };
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(vx), Some(vy)) => {
                        if let Some(d) = first_value_difference(vx, vy, &label(vx, i)) {
                            return Some(d);
                        }
                    }
                    (Some(vx), None) => return Some((label(vx, i), Some(short(vx)), None)),
                    (None, Some(vy)) => return Some((label(vy, i), None, Some(short(vy)))),
                    (None, None) => {}
                }
            }
            None
        }
        _ if a == b => None,
        _ => Some((path.to_string(), Some(short(a)), Some(short(b)))),
    }
}

/// A value as TOML, cut to one short line.
fn short(v: &toml::Value) -> String {
    let t = match v {
        toml::Value::Table(t) => t
            .get("name")
            .and_then(toml::Value::as_str)
            .map_or_else(|| "a table".to_string(), |n| format!("feature {n:?}")),
        v => v.to_string(),
    };
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_difference_names_the_first_setting() {
        let a =
            "timeline = \"/cam_h\"\nfps = 30\n[[features]]\nname = \"action\"\ntopic = \"/cmd\"\n";
        let b =
            "timeline = \"/cam_r\"\nfps = 30\n[[features]]\nname = \"action\"\ntopic = \"/cmd2\"\n";
        assert_eq!(
            config_difference(a, b, "S1", "S2").unwrap(),
            "timeline is \"/cam_h\" in S1, \"/cam_r\" in S2"
        );
        let c = b.replace("/cam_r", "/cam_h");
        assert_eq!(
            config_difference(a, &c, "S1", "S2").unwrap(),
            "features[\"action\"].topic is \"/cmd\" in S1, \"/cmd2\" in S2"
        );
        assert_eq!(config_difference(a, a, "S1", "S2"), None);
        let d = a.replace("fps = 30\n", "");
        assert_eq!(
            config_difference(a, &d, "S1", "S2").unwrap(),
            "fps is 30 in S1 and not set in S2"
        );
    }

    const KUAVO: &str = r#"
fps = 10
timeline = "/cam_h/color/image_raw/compressed"
trim_start = 10
trim_end = 10
robot_type = "kuavo4pro"
task = "pick up the cup"

[[features]]
name = "observation.images.head_cam_h"
topic = "/cam_h/color/image_raw/compressed"

[[features]]
name = "observation.state"
policy = "nearest"
[[features.sources]]
topic = "/sensors_data_raw"
field = "joint_data.joint_q"
range = "12..26"
[[features.sources]]
topic = "/leju_claw_state"
field = "data.position"
scale = 0.01
"#;

    #[test]
    fn parses_kuavo_style_config_and_round_trips() {
        let cfg = ConvertConfig::from_toml(KUAVO, "kuavo.toml").unwrap();
        assert_eq!(cfg.fps, Some(10));
        assert_eq!(cfg.features.len(), 2);
        let srcs = cfg.features[1].all_sources().unwrap();
        assert_eq!(srcs[0].index_range().unwrap(), Some((12, 26)));
        assert_eq!(srcs[1].scale, Some(0.01));
        let again = ConvertConfig::from_toml(&cfg.to_toml(), "printed").unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn rejects_bad_configs_with_a_reason() {
        let bad = |t: &str| {
            ConvertConfig::from_toml(t, "x.toml")
                .unwrap_err()
                .to_string()
        };
        assert!(bad("features = []").contains("no features"));
        assert!(bad("[[features]]\nname = \"a/b\"\ntopic = \"/x\"").contains("contains '/'"));
        assert!(bad("[[features]]\nname = \"a\"").contains("no `topic`"));
        assert!(
            bad("[[features]]\nname = \"a\"\ntopic = \"/x\"\nrange = \"5..2\"").contains("empty")
        );
        assert!(bad("fps = 0\n[[features]]\nname = \"a\"\ntopic = \"/x\"").contains("fps"));
        assert!(bad("bogus = 1\n[[features]]\nname = \"a\"\ntopic = \"/x\"").contains("bogus"));
    }
}
