//! A small, deterministic humanoid demo bag: two JPEG cameras at 30 Hz, arm joint states and
//! joint commands at 200 Hz, about four seconds, written with the project's own bag writer; the
//! head camera drops one frame (frame [`DEMO_DROPPED_FRAME`]), as real cameras do.
//!
//! Everything is computed from the message index (no clock, no OS randomness), so the output is the
//! same byte for byte on every run. Chunks are lz4-compressed (so readers exercise their lz4 path)
//! with a 256 KiB threshold, which gives a handful of chunks for chunk-by-chunk tests.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use crate::bag::writer::{BagWriter, BagWriterOptions, Compression, ConnectionInfo, Payload};

/// Header stamp of the first message: 2023-11-14T22:13:20Z.
const DEMO_START_NS: u64 = 1_700_000_000_000_000_000;
/// Length of the recording: 4 s.
const DEMO_DURATION_NS: u64 = 4_000_000_000;
/// Rate of `/joint_states` and `/joint_cmd`.
const DEMO_JOINT_RATE_HZ: u64 = 200;
/// The head camera frame that is missing from the demo.
const DEMO_DROPPED_FRAME: u64 = 57;
/// Camera image size in pixels.
const DEMO_IMAGE_WIDTH: u32 = 96;
const DEMO_IMAGE_HEIGHT: u32 = 72;
/// Chunk threshold of the demo bag: 256 KiB of uncompressed data.
const DEMO_CHUNK_THRESHOLD: usize = 256 * 1024;
/// Chunk compression of the demo bag.
const DEMO_COMPRESSION: Compression = Compression::Lz4;
/// JPEG quality of the camera frames.
const JPEG_QUALITY: u8 = 80;

/// Arm joint names in `/joint_states` and `/joint_cmd` order.
const DEMO_JOINTS: [&str; 8] = [
    "arm_joint_1",
    "arm_joint_2",
    "arm_joint_3",
    "arm_joint_4",
    "arm_joint_5",
    "arm_joint_6",
    "arm_joint_7",
    "gripper_joint",
];

/// MD5 sum of `sensor_msgs/CompressedImage`.
pub const COMPRESSED_IMAGE_MD5: &str = "8f7a12909da2c9d3332d540a0977563f";
/// MD5 sum of `sensor_msgs/JointState`.
pub const JOINT_STATE_MD5: &str = "3066dcd76a6cfaef579bd0f34173e9fd";

/// `std_msgs/Header` as ROS Noetic's recorder appends it to a full definition.
const HEADER_DEF: &str = "MSG: std_msgs/Header
# Standard metadata for higher-level stamped data types.
# This is generally used to communicate timestamped data 
# in a particular coordinate frame.
# 
# sequence ID: consecutively increasing ID 
uint32 seq
#Two-integer timestamp that is expressed as:
# * stamp.sec: seconds (stamp_secs) since epoch (in Python the variable is called 'secs')
# * stamp.nsec: nanoseconds since stamp_secs (in Python the variable is called 'nsecs')
# time-handling sugar is provided by the client library
time stamp
#Frame this data is associated with
# 0: no frame
# 1: global frame
string frame_id
";

const SEPARATOR: &str =
    "================================================================================\n";

const COMPRESSED_IMAGE_MSG: &str = "# This message contains a compressed image

Header header        # Header timestamp should be acquisition time of image
                     # Header frame_id should be optical frame of camera
                     # origin of frame should be optical center of cameara
                     # +x should point to the right in the image
                     # +y should point down in the image
                     # +z should point into to plane of the image

string format        # Specifies the format of the data
                     #   Acceptable values:
                     #     jpeg, png
uint8[] data         # Compressed image buffer
";

const JOINT_STATE_MSG: &str = "# This is a message that holds data to describe the state of a set of torque controlled joints. 
#
# The state of each joint (revolute or prismatic) is defined by:
#  * the position of the joint (rad or m),
#  * the velocity of the joint (rad/s or m/s) and 
#  * the effort that is applied in the joint (Nm or N).
#
# Each joint is uniquely identified by its name
# The header specifies the time at which the joint states were recorded. All the joint states
# in one message have to be recorded at the same time.
#
# This message consists of a multiple arrays, one for each part of the joint state. 
# The goal is to make each of the fields optional. When e.g. your joints have no
# effort associated with them, you can leave the effort array empty. 
#
# All arrays in this message should have the same size, or be empty.
# This is the only way to uniquely associate the joint name with the correct
# states.


Header header

string[] name
float64[] position
float64[] velocity
float64[] effort
";

/// Full text of `sensor_msgs/CompressedImage` as stored in a Noetic connection record.
pub fn compressed_image_definition() -> String {
    format!("{COMPRESSED_IMAGE_MSG}\n{SEPARATOR}{HEADER_DEF}")
}

/// Full text of `sensor_msgs/JointState` as stored in a Noetic connection record.
pub fn joint_state_definition() -> String {
    format!("{JOINT_STATE_MSG}\n{SEPARATOR}{HEADER_DEF}")
}

/// One topic of the demo bag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DemoTopic {
    /// Topic name.
    topic: String,
    /// Message type.
    msgtype: String,
    /// Messages written.
    count: u64,
}

/// What [`write_demo_bag`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Size of the bag in bytes.
    pub(crate) bytes: u64,
    /// Topics in connection id order.
    topics: Vec<DemoTopic>,
    /// Messages written.
    pub(crate) messages: u64,
    /// Chunks written.
    pub(crate) chunks: usize,
    /// Earliest record time, ns since the epoch.
    start_ns: u64,
    /// Latest record time, ns since the epoch.
    end_ns: u64,
}

/// Writes the demo bag to `path` (created or truncated).
#[cfg(test)]
fn write_demo_bag(path: &Path) -> io::Result<DemoSummary> {
    write_session_bag(path, 0)
}

/// Writes recording session `session` of the demo robot to `path`: session 0 is the demo bag;
/// session `n` starts `n` hours later and drops frame `57 + n` of the head camera (`n` even) or
/// of the left camera (`n` odd), so a set of sessions is a realistic night of recordings (same
/// setup, different bags) for scaling tests.
pub fn write_session_bag(path: &Path, session: u64) -> io::Result<DemoSummary> {
    let file = BufWriter::new(File::create(path)?);
    let (file, summary) = write_session_bag_to(file, session)?;
    file.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(summary)
}

/// Writes the demo bag to any seekable writer (a `Cursor<Vec<u8>>` for in-memory tests).
pub fn write_demo_bag_to<W: Write + Seek>(inner: W) -> io::Result<(W, DemoSummary)> {
    write_session_bag_to(inner, 0)
}

/// Writes session `session` (see [`write_session_bag`]) to any seekable writer.
fn write_session_bag_to<W: Write + Seek>(
    mut inner: W,
    session: u64,
) -> io::Result<(W, DemoSummary)> {
    let start_ns = DEMO_START_NS + session * 3_600_000_000_000;
    let (drop_cam, drop_frame) = (session % 2, DEMO_DROPPED_FRAME + session);
    let start_pos = inner.stream_position()?;
    let opts = BagWriterOptions {
        compression: DEMO_COMPRESSION,
        chunk_threshold: DEMO_CHUNK_THRESHOLD,
        ..BagWriterOptions::default()
    };
    let mut w = BagWriter::new(inner, opts)?;
    let image_def = compressed_image_definition();
    let joint_def = joint_state_definition();
    let image_type = "sensor_msgs/CompressedImage";
    let joint_type = "sensor_msgs/JointState";
    let conns = [
        (
            "/cam_h/color/image_raw/compressed",
            image_type,
            "/cam_h/realsense2_camera",
        ),
        (
            "/cam_l/color/image_raw/compressed",
            image_type,
            "/cam_l/realsense2_camera",
        ),
        ("/joint_states", joint_type, "/arm_driver"),
        ("/joint_cmd", joint_type, "/teleop_controller"),
    ];
    let mut ids = [0u32; 4];
    for (id, (topic, msgtype, node)) in ids.iter_mut().zip(conns) {
        let (md5, def) = if msgtype == image_type {
            (COMPRESSED_IMAGE_MD5, image_def.as_str())
        } else {
            (JOINT_STATE_MD5, joint_def.as_str())
        };
        *id = w.add_connection_info(
            &ConnectionInfo::new(topic, msgtype, md5, def)
                .callerid(node)
                .latching(false),
        )?;
    }

    // (record time, connection, payload); sorted by record time before writing.
    let mut msgs: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    for (cam, conn) in [(0u64, ids[0]), (1, ids[1])] {
        let period = 1_000_000_000 / 30;
        for i in 0..DEMO_DURATION_NS / period {
            if cam == drop_cam && i == drop_frame {
                continue;
            }
            // ±2 ms stamp jitter, cam_l 5 ms behind cam_h, 18-26 ms transport latency.
            let jitter = (mix(cam * 1_000_003 + i) % 4_000_001) as i64 - 2_000_000;
            let stamp = (start_ns + i * period + cam * 5_000_000)
                .saturating_add_signed(jitter)
                .max(start_ns);
            let latency = 18_000_000 + mix(cam * 7_777_777 + i) % 8_000_000;
            let jpeg = camera_frame(cam, stamp - start_ns)?;
            let frame_id = if cam == 0 {
                "cam_h_color_optical_frame"
            } else {
                "cam_l_color_optical_frame"
            };
            let mut p = Payload::new();
            header(&mut p, i as u32, stamp, frame_id)
                .string("jpeg")
                .bytes(&jpeg);
            msgs.push((stamp + latency, conn, p.into_vec()));
        }
    }
    let period = 1_000_000_000 / DEMO_JOINT_RATE_HZ;
    for i in 0..DEMO_DURATION_NS / period {
        let stamp = start_ns + i * period;
        let t = (i * period) as f64 * 1e-9;
        let mut state = Payload::new();
        header(&mut state, i as u32, stamp, "")
            .string_array(&DEMO_JOINTS)
            .f64_array(&joints(t, Joint::Position))
            .f64_array(&joints(t, Joint::Velocity))
            .f64_array(&joints(t, Joint::Effort));
        msgs.push((
            stamp + 1_000_000 + mix(i) % 500_000,
            ids[2],
            state.into_vec(),
        ));
        // The command leads the measured state by 10 ms; positions only.
        let mut cmd = Payload::new();
        header(&mut cmd, i as u32, stamp, "")
            .string_array(&DEMO_JOINTS)
            .f64_array(&joints(t + 0.01, Joint::Position))
            .f64_array(&[])
            .f64_array(&[]);
        msgs.push((
            stamp + 400_000 + mix(i + 99) % 300_000,
            ids[3],
            cmd.into_vec(),
        ));
    }
    msgs.sort_by_key(|m| (m.0, m.1));

    let mut counts = [0u64; 4];
    for (time, conn, payload) in &msgs {
        w.write(*conn, *time, payload)?;
        counts[*conn as usize] += 1;
    }
    let messages = w.message_count();
    w.flush_chunk()?;
    let chunks = w.chunk_count();
    let mut inner = w.finish()?;
    let end_pos = inner.stream_position()?;
    let summary = DemoSummary {
        bytes: end_pos - start_pos,
        topics: conns
            .iter()
            .zip(counts)
            .map(|((topic, msgtype, _), count)| DemoTopic {
                topic: (*topic).to_owned(),
                msgtype: (*msgtype).to_owned(),
                count,
            })
            .collect(),
        messages,
        chunks,
        start_ns: msgs.first().map_or(0, |m| m.0),
        end_ns: msgs.last().map_or(0, |m| m.0),
    };
    Ok((inner, summary))
}

/// Appends a `std_msgs/Header` with a stamp in ns.
fn header<'a>(p: &'a mut Payload, seq: u32, stamp_ns: u64, frame_id: &str) -> &'a mut Payload {
    let sec = (stamp_ns / 1_000_000_000) as u32;
    let nsec = (stamp_ns % 1_000_000_000) as u32;
    p.header(seq, sec, nsec, frame_id)
}

#[derive(Clone, Copy)]
enum Joint {
    Position,
    Velocity,
    Effort,
}

/// Smooth sinusoidal joint trajectories: a slow reach with per-joint amplitude, frequency and
/// phase; the gripper opens and closes once per two seconds.
fn joints(t: f64, what: Joint) -> Vec<f64> {
    (0..DEMO_JOINTS.len())
        .map(|j| {
            let jf = j as f64;
            let amp = 0.3 + 0.1 * jf;
            let freq = 0.25 + 0.05 * jf;
            let phase = 0.7 * jf;
            let offset = if j == 7 { 0.04 } else { 0.2 * (jf - 3.0) };
            let amp = if j == 7 { 0.04 } else { amp };
            let freq = if j == 7 { 0.5 } else { freq };
            let w = std::f64::consts::TAU * freq;
            match what {
                Joint::Position => offset + amp * (w * t + phase).sin(),
                Joint::Velocity => amp * w * (w * t + phase).cos(),
                Joint::Effort => 2.0 - 0.2 * jf - 0.5 * amp * w * w * (w * t + phase).sin(),
            }
        })
        .collect()
}

/// One JPEG frame: a diagonal colour gradient that scrolls with time and a bright box moving
/// across the image (left to right on the head camera, top to bottom on the left-wrist camera).
fn camera_frame(cam: u64, t_ns: u64) -> io::Result<Vec<u8>> {
    let (w, h) = (DEMO_IMAGE_WIDTH, DEMO_IMAGE_HEIGHT);
    let ms = (t_ns / 1_000_000) as u32;
    let shift = ms / 20;
    let (bx, by) = if cam == 0 {
        ((ms / 25) % (w - 16), h / 2 - 8)
    } else {
        (w / 2 - 8, (ms / 30) % (h - 16))
    };
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let in_box = (bx..bx + 16).contains(&x) && (by..by + 16).contains(&y);
            let px = if in_box {
                [250, 220, 40]
            } else {
                let g = (x + y + shift) % 256;
                if cam == 0 {
                    [g as u8, (255 - g) as u8, (y * 3) as u8]
                } else {
                    [(x * 2) as u8, g as u8, (255 - g) as u8]
                }
            };
            rgb.extend_from_slice(&px);
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode(&rgb, w, h, ExtendedColorType::Rgb8)
        .map_err(io::Error::other)?;
    Ok(out)
}

/// SplitMix64: a fixed, platform-independent scramble for deterministic jitter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn demo_is_deterministic_small_and_readable() {
        let (a, summary) = write_demo_bag_to(Cursor::new(Vec::new())).unwrap();
        let (b, again) = write_demo_bag_to(Cursor::new(Vec::new())).unwrap();
        let (a, b) = (a.into_inner(), b.into_inner());
        assert!(a == b, "demo bag differs between two runs");
        assert_eq!(summary, again);
        assert_eq!(summary.bytes, a.len() as u64);
        assert!(a.len() <= 1_600_000, "demo bag is {} bytes", a.len());
        assert!(summary.chunks >= 2, "several chunks: {}", summary.chunks);
        let counts: Vec<u64> = summary.topics.iter().map(|t| t.count).collect();
        assert_eq!(counts, [119, 120, 800, 800]);
        assert!(summary.end_ns - summary.start_ns < DEMO_DURATION_NS + 50_000_000);

        // The independent `rosbag` crate reads it back in record-time order per chunk.
        let path =
            std::env::temp_dir().join(format!("bag2dataset-demo-{}.bag", std::process::id()));
        let written = write_demo_bag(&path).unwrap();
        assert_eq!(written, summary);
        assert_eq!(std::fs::read(&path).unwrap(), a);
        let bag = rosbag::RosBag::new(&path).unwrap();
        let mut defs = Vec::new();
        for r in bag.index_records() {
            if let rosbag::IndexRecord::Connection(c) = r.unwrap() {
                defs.push((c.tp.to_owned(), c.message_definition.to_owned()));
            }
        }
        assert_eq!(defs.len(), 4);
        assert!(defs[0].1.ends_with("string frame_id\n"));
        assert!(defs[2].1.contains("\nfloat64[] effort\n\n====="));
        let mut last = 0;
        let mut n = 0;
        for r in bag.chunk_records() {
            if let rosbag::ChunkRecord::Chunk(chunk) = r.unwrap() {
                for m in chunk.messages() {
                    if let rosbag::MessageRecord::MessageData(m) = m.unwrap() {
                        assert!(m.time >= last);
                        last = m.time;
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, summary.messages);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn definitions_have_noetic_layout() {
        let d = joint_state_definition();
        assert!(d.starts_with("# This is a message that holds data"));
        assert!(d.contains("float64[] effort\n\n================================================================================\nMSG: std_msgs/Header\n"));
        assert_eq!(d.matches("MSG: ").count(), 1);
        let c = compressed_image_definition();
        assert!(c.contains("uint8[] data         # Compressed image buffer\n\n===="));
    }

    /// Writes `demo.bag` into `$BAG2DATASET_OUT_DIR` for checks with other readers:
    /// `BAG2DATASET_OUT_DIR=/tmp cargo test --release --lib -- --ignored write_demo_file`.
    #[test]
    #[ignore]
    fn write_demo_file() {
        let dir = std::env::var_os("BAG2DATASET_OUT_DIR").expect("set BAG2DATASET_OUT_DIR");
        let summary = write_demo_bag(&Path::new(&dir).join("demo.bag")).unwrap();
        println!("{summary:#?}");
    }
}
