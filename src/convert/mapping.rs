//! Zero-config: a conversion config chosen from what a bag holds. Cameras become
//! `observation.images.<name>`, the first JointState-like topic `observation.state`, an obvious
//! command topic `action`, and the busiest camera is the timeline (cameras within 10 % of the
//! busiest count as equally busy; the first by topic name wins, so dropped frames never switch
//! it).

use std::collections::HashMap;

use super::config::{ConvertConfig, DEFAULT_TOLERANCE_MS, FeatureConfig, Policy, TimeSource};
use crate::bag::BagIndex;
use crate::error::{Error, Result};

/// Message types carrying camera frames.
const IMAGE_TYPES: [&str; 2] = ["sensor_msgs/CompressedImage", "sensor_msgs/Image"];

/// Topic path parts that say nothing about which camera it is.
const GENERIC_PARTS: [&str; 9] = [
    "image_raw",
    "compressed",
    "color",
    "image",
    "image_rect",
    "image_rect_color",
    "rgb",
    "camera",
    "image_color",
];

/// Words that mark a topic as a command rather than a measurement.
const COMMAND_WORDS: [&str; 5] = ["cmd", "command", "action", "target", "desired"];

/// Whether the message type is an image.
pub(crate) fn is_image_type(msgtype: &str) -> bool {
    IMAGE_TYPES.contains(&msgtype)
}

/// `/cam_h/color/image_raw/compressed` → `cam_h`; `/camera/depth/image_raw` → `depth`.
fn camera_name(topic: &str) -> String {
    let parts: Vec<&str> = topic
        .split('/')
        .filter(|p| !p.is_empty() && !GENERIC_PARTS.contains(p))
        .collect();
    let name = parts
        .join("_")
        .replace(|c: char| !(c.is_ascii_alphanumeric() || c == '_'), "_");
    if name.is_empty() {
        "camera".into()
    } else {
        name
    }
}

/// The joint-position field of a JointState-like type, if it is one.
fn joint_field(msgtype: &str) -> Option<&'static str> {
    match msgtype {
        "sensor_msgs/JointState" => Some("position"),
        "kuavo_msgs/sensorsData" => Some("joint_data.joint_q"),
        "kuavo_msgs/jointCmd" => Some("joint_q"),
        _ => None,
    }
}

fn is_command(topic: &str) -> bool {
    let t = topic.to_ascii_lowercase();
    COMMAND_WORDS.iter().any(|w| t.contains(w))
}

/// Cameras with at least this share (per mille) of the busiest camera's messages count as
/// equally busy: a few dropped frames (a 30 Hz camera with 29.7 Hz left) must not change which
/// camera is the timeline from one bag of a recording setup to the next.
const EQUALLY_BUSY_PER_MILLE: u64 = 900;

/// The timeline camera among `(topic, messages)`: of the cameras within
/// [`EQUALLY_BUSY_PER_MILLE`] of the busiest, the first by topic name. Only a camera running at
/// a clearly higher rate (not one that dropped fewer frames) wins over the name order, so every
/// bag of one setup, and every shard of one job, picks the same camera.
fn timeline_camera<'a>(cameras: &[(&'a str, u64)]) -> Option<&'a str> {
    let max = cameras.iter().map(|c| c.1).max()?;
    cameras
        .iter()
        .filter(|(_, n)| n * 1000 >= max * EQUALLY_BUSY_PER_MILLE)
        .map(|(t, _)| *t)
        .min()
}

/// Chooses a config for `index`.
pub(crate) fn zero_config(index: &BagIndex) -> Result<ConvertConfig> {
    let counts = index.counts_by_connection();
    let mut topic_count: HashMap<&str, u64> = HashMap::new();
    for c in &index.connections {
        *topic_count.entry(c.topic.as_str()).or_insert(0) +=
            counts.get(&c.id).copied().unwrap_or(0);
    }
    let mut features = Vec::new();
    let mut cameras: Vec<(&str, u64)> = Vec::new();
    let mut names_used: Vec<String> = Vec::new();
    for topic in index.topics() {
        let Some(conn) = index.connections.iter().find(|c| c.topic == topic) else {
            continue;
        };
        let n = topic_count.get(topic).copied().unwrap_or(0);
        if is_image_type(&conn.msgtype) && n > 0 {
            let mut name = camera_name(topic);
            if names_used.contains(&name) {
                name = format!("{name}_{}", names_used.len());
            }
            names_used.push(name.clone());
            cameras.push((topic, n));
            features.push(FeatureConfig::single(
                format!("observation.images.{name}"),
                topic,
                None,
            ));
        }
    }
    let joint_topics: Vec<(&str, &'static str)> = index
        .topics()
        .into_iter()
        .filter(|t| topic_count.get(t).copied().unwrap_or(0) > 0)
        .filter_map(|t| {
            let conn = index.connections.iter().find(|c| c.topic == t)?;
            joint_field(&conn.msgtype).map(|f| (t, f))
        })
        .collect();
    let state = joint_topics.iter().find(|(t, _)| !is_command(t));
    let action = joint_topics.iter().find(|(t, _)| is_command(t));
    for (name, pick) in [("observation.state", state), ("action", action)] {
        if let Some((topic, field)) = pick {
            features.push(FeatureConfig::single(name, topic, Some(field)));
        }
    }
    let busiest = timeline_camera(&cameras);
    let timeline = busiest
        .map(str::to_string)
        .or_else(|| state.map(|(t, _)| t.to_string()));
    if features.is_empty() || timeline.is_none() {
        let listing: Vec<String> = index
            .topics()
            .iter()
            .map(|t| {
                let ty = index
                    .connections
                    .iter()
                    .find(|c| c.topic == *t)
                    .map_or("?", |c| c.msgtype.as_str());
                format!(
                    "{t} ({ty}, {} msgs)",
                    topic_count.get(t).copied().unwrap_or(0)
                )
            })
            .collect();
        return Err(Error::Config(format!(
            "no camera (CompressedImage/Image) or JointState-like topic to build a dataset from \
             automatically; write a --config naming the topics and fields (topics: {})",
            if listing.is_empty() {
                "none".to_string()
            } else {
                listing.join(", ")
            }
        )));
    }
    Ok(ConvertConfig {
        fps: None,
        timeline,
        time_source: TimeSource::Record,
        tolerance_ms: DEFAULT_TOLERANCE_MS,
        policy: Policy::Nearest,
        trim_start: 0,
        trim_end: 0,
        robot_type: None,
        task: "default task".into(),
        strict: false,
        storage: Default::default(),
        video: None,
        format: None,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::{camera_name, timeline_camera};

    #[test]
    fn timeline_camera_ignores_a_few_dropped_frames() {
        // Shard 1's first bag dropped frames on /cam_h, shard 2's on /cam_r: both pick /cam_h.
        let a = [("/cam_h", 598), ("/cam_l", 600), ("/cam_r", 600)];
        let b = [("/cam_h", 600), ("/cam_l", 599), ("/cam_r", 597)];
        assert_eq!(timeline_camera(&a), Some("/cam_h"));
        assert_eq!(timeline_camera(&b), Some("/cam_h"));
        // A camera at a clearly higher rate wins over the name order.
        assert_eq!(timeline_camera(&[("/a", 300), ("/b", 600)]), Some("/b"));
        assert_eq!(timeline_camera(&[]), None);
    }

    #[test]
    fn camera_names_drop_generic_parts() {
        assert_eq!(camera_name("/cam_h/color/image_raw/compressed"), "cam_h");
        assert_eq!(camera_name("/camera/depth/image_raw"), "depth");
        assert_eq!(camera_name("/front-left/image"), "front_left");
        assert_eq!(camera_name("/image_raw"), "camera");
    }
}
