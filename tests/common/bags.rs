//! Bag fixtures: small synthetic bags with known values, written with the project's own bag
//! writer, and the pieces they share: the camera and joint-state connections, stamped
//! payloads and synthetic camera frames.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression, Payload};
use bag2dataset::demo::{
    COMPRESSED_IMAGE_MD5, JOINT_STATE_MD5, compressed_image_definition, joint_state_definition,
};

/// A bag being written to a file.
pub type Writer = BagWriter<BufWriter<File>>;

/// Record time of the first message of a synthetic bag, ns.
pub const START: u64 = 1_000_000_000_000_000_000;

/// Adds a `sensor_msgs/CompressedImage` connection per topic of `cameras`, then a
/// `sensor_msgs/JointState` one on `joints`; their ids.
pub fn cameras_and_joints(w: &mut Writer, cameras: &[&str], joints: &str) -> (Vec<u32>, u32) {
    let cams = cameras
        .iter()
        .map(|topic| {
            w.add_connection(
                topic,
                "sensor_msgs/CompressedImage",
                COMPRESSED_IMAGE_MD5,
                &compressed_image_definition(),
            )
            .unwrap()
        })
        .collect();
    let js = w
        .add_connection(
            joints,
            "sensor_msgs/JointState",
            JOINT_STATE_MD5,
            &joint_state_definition(),
        )
        .unwrap();
    (cams, js)
}

/// A payload that starts with a `std_msgs/Header`: `seq`, stamped `stamp_ns`, no frame id.
pub fn stamped(seq: u32, stamp_ns: u64) -> Payload {
    let (sec, nsec) = (
        (stamp_ns / 1_000_000_000) as u32,
        (stamp_ns % 1_000_000_000) as u32,
    );
    let mut p = Payload::new();
    p.header(seq, sec, nsec, "");
    p
}

/// A `sensor_msgs/CompressedImage` of format `jpeg`.
pub fn compressed_image(seq: u32, stamp_ns: u64, jpeg: &[u8]) -> Payload {
    let mut p = stamped(seq, stamp_ns);
    p.string("jpeg").bytes(jpeg);
    p
}

/// A `sensor_msgs/JointState` with positions only (velocity and effort empty).
pub fn joint_positions(seq: u32, stamp_ns: u64, names: &[String], position: &[f64]) -> Payload {
    let mut p = stamped(seq, stamp_ns);
    p.string_array(names)
        .f64_array(position)
        .f64_array(&[])
        .f64_array(&[]);
    p
}

/// `n` joint names `j0`, `j1`, ….
pub fn joint_names(n: usize) -> Vec<String> {
    (0..n).map(|j| format!("j{j}")).collect()
}

/// A bag with a 30 Hz camera `/cam/image/compressed` (a 16×12 JPEG whose grey level depends on
/// `seed`) and a 200 Hz `/arm/joint_states` whose positions are known functions of time:
/// `position[j] = j * 1000 + t_ms + seed` (t_ms = record time in ms since the bag's start).
#[derive(Debug, Clone)]
pub struct SyntheticBag {
    pub seconds: u64,
    pub compression: Compression,
    pub chunk_threshold: usize,
    /// Seconds after [`START`] at which the bag starts.
    pub start_s: u64,
    pub joints: usize,
    pub seed: u64,
    /// Written like a recording killed between chunks: no index section (read by a scan).
    pub unindexed: bool,
}

impl Default for SyntheticBag {
    fn default() -> Self {
        SyntheticBag {
            seconds: 2,
            compression: Compression::Lz4,
            chunk_threshold: BagWriterOptions::default().chunk_threshold,
            start_s: 0,
            joints: 6,
            seed: 0,
            unindexed: false,
        }
    }
}

impl SyntheticBag {
    /// Writes the bag to `path`.
    pub fn write(&self, path: &Path) {
        let opts = BagWriterOptions {
            chunk_threshold: self.chunk_threshold,
            ..BagWriterOptions::with_compression(self.compression)
        };
        let mut w = BagWriter::create(path, opts).expect("bag writer");
        let (cams, js) =
            cameras_and_joints(&mut w, &["/cam/image/compressed"], "/arm/joint_states");
        let start = START + self.start_s * 1_000_000_000;
        let mut jpeg = Vec::new();
        let grey = (40 + self.seed * 37 % 180) as u8;
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode(&[grey; 16 * 12 * 3], 16, 12, image::ExtendedColorType::Rgb8)
            .unwrap();
        let names = joint_names(self.joints);
        // both streams merged in time order
        let mut events: Vec<(u64, bool)> = Vec::new();
        for k in 0..self.seconds * 30 {
            events.push((k * 1_000_000_000 / 30, true));
        }
        for k in 0..self.seconds * 200 {
            events.push((k * 5_000_000, false));
        }
        events.sort();
        for (i, (t, is_cam)) in events.into_iter().enumerate() {
            let abs = start + t;
            if is_cam {
                let p = compressed_image(i as u32, abs, &jpeg);
                w.write(cams[0], abs, p.as_slice()).unwrap();
            } else {
                let t_ms = t as f64 / 1e6;
                let pos: Vec<f64> = (0..self.joints)
                    .map(|j| j as f64 * 1000.0 + t_ms + self.seed as f64)
                    .collect();
                let p = joint_positions(i as u32, abs, &names, &pos);
                w.write(js, abs, p.as_slice()).unwrap();
            }
        }
        if self.unindexed {
            w.finish_unindexed().unwrap();
        } else {
            w.finish().unwrap();
        }
    }
}

/// A bag with a 30 Hz camera `/cam/image/compressed` of `frames` [`jpeg_frame`]s (`seed`
/// shifts them) and a 100 Hz `/arm/joint_states` of three joints at `[t_s, 1, third_joint]`
/// (t_s = seconds since the bag's start); one header sequence across both topics.
#[derive(Debug, Clone)]
pub struct CameraBag {
    pub frames: u32,
    pub seed: u32,
    /// Record time of the first message, ns.
    pub start: u64,
    pub chunk_threshold: usize,
    pub third_joint: f64,
}

impl CameraBag {
    /// `frames` frames of camera `seed`, starting at [`START`], default chunks, joints
    /// `[t_s, 1, 2]`.
    pub fn new(frames: u32, seed: u32) -> Self {
        CameraBag {
            frames,
            seed,
            start: START,
            chunk_threshold: BagWriterOptions::default().chunk_threshold,
            third_joint: 2.0,
        }
    }

    /// Writes the bag (uncompressed) to `path`.
    pub fn write(&self, path: &Path) {
        let opts = BagWriterOptions {
            chunk_threshold: self.chunk_threshold,
            ..BagWriterOptions::with_compression(Compression::None)
        };
        let mut w = BagWriter::create(path, opts).unwrap();
        let (cams, js) =
            cameras_and_joints(&mut w, &["/cam/image/compressed"], "/arm/joint_states");
        let names = joint_names(3);
        let mut events: Vec<(u64, Option<u32>)> = (0..self.frames)
            .map(|k| (u64::from(k) * 1_000_000_000 / 30, Some(k)))
            .collect();
        let span = u64::from(self.frames) * 1_000_000_000 / 30;
        events.extend((0..=span / 10_000_000).map(|i| (i * 10_000_000, None)));
        events.sort();
        for (i, (t, cam_frame)) in events.into_iter().enumerate() {
            let abs = self.start + t;
            match cam_frame {
                Some(k) => {
                    let p = compressed_image(i as u32, abs, &jpeg_frame(k, self.seed));
                    w.write(cams[0], abs, p.as_slice()).unwrap();
                }
                None => {
                    let pos = [t as f64 / 1e9, 1.0, self.third_joint];
                    let p = joint_positions(i as u32, abs, &names, &pos);
                    w.write(js, abs, p.as_slice()).unwrap();
                }
            }
        }
        w.finish().unwrap();
    }
}

/// Size of the synthetic camera frames (SVT-AV1 needs at least 64 × 64).
pub const FRAME_W: u32 = 128;
pub const FRAME_H: u32 = 96;

/// A triangle wave over 0..=255 with period 512: smooth gradients that wrap without a jump.
pub fn tri(v: u32) -> u8 {
    let v = v % 512;
    if v < 256 { v as u8 } else { (511 - v) as u8 }
}

/// Frame `k` of a synthetic camera (`seed` shifts it), RGB: smooth gradients that move from
/// frame to frame, so encoders and JPEG see realistic content.
pub fn frame_rgb(k: u32, seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((FRAME_W * FRAME_H * 3) as usize);
    for y in 0..FRAME_H {
        for x in 0..FRAME_W {
            px.push(tri(x * 2 + k * 5 + seed * 40));
            px.push(tri(y * 3 + k * 3 + seed * 70));
            px.push(tri(x + y + k * 7 + seed * 90));
        }
    }
    px
}

/// RGB pixels of `FRAME_W` × `FRAME_H` as a quality-95 JPEG.
pub fn jpeg(rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(rgb, FRAME_W, FRAME_H, image::ExtendedColorType::Rgb8)
        .expect("jpeg encodes");
    out
}

/// [`frame_rgb`] as a JPEG.
pub fn jpeg_frame(k: u32, seed: u32) -> Vec<u8> {
    jpeg(&frame_rgb(k, seed))
}

/// The features of [`SyntheticBag`] and [`CameraBag`] as config TOML: the camera as
/// `observation.images.cam`, the joint positions as `observation.state`.
pub const CAM_AND_STATE: &str = r#"[[features]]
name = "observation.images.cam"
topic = "/cam/image/compressed"
[[features]]
name = "observation.state"
topic = "/arm/joint_states"
field = "position"
"#;

/// The config of top-level keys `head` (e.g. `fps = 10`) and [`CAM_AND_STATE`].
pub fn cam_and_state_config(head: &str) -> bag2dataset::convert::config::ConvertConfig {
    bag2dataset::convert::config::ConvertConfig::from_toml(
        &format!("{head}\n{CAM_AND_STATE}"),
        "test",
    )
    .unwrap()
}

/// `n` [`SyntheticBag`]s `dir/in/bag-<k>.bag` of `seconds` each (4 joints, seed `k`, starting
/// `k` × 100 s after [`START`]), each with a task sidecar: `pick` and `place` alternating.
pub fn task_bags(dir: &Path, n: u64, seconds: u64) -> Vec<std::path::PathBuf> {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    (0..n)
        .map(|k| {
            let p = inputs.join(format!("bag-{k}.bag"));
            SyntheticBag {
                seconds,
                seed: k,
                start_s: k * 100,
                joints: 4,
                ..SyntheticBag::default()
            }
            .write(&p);
            let task = if k % 2 == 0 { "pick" } else { "place" };
            std::fs::write(format!("{}.task.txt", p.display()), task).unwrap();
            p
        })
        .collect()
}
