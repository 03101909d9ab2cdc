//! Test fixtures shared by the integration tests: small synthetic bags with known values,
//! written with the project's own bag writer.

#![allow(dead_code)]

pub mod same;

use std::path::{Path, PathBuf};

use bag2dataset::bag::writer::{BagWriter, BagWriterOptions, Compression, Payload};
use bag2dataset::demo::{
    COMPRESSED_IMAGE_MD5, JOINT_STATE_MD5, compressed_image_definition, joint_state_definition,
};

/// `../shared/testdata`, or None (with a SKIPPED line saying why) when it is absent.
pub fn testdata() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; this test needs the shared test data",
            dir.display()
        );
        None
    }
}

/// Record time of the first message of a synthetic bag, ns.
pub const START: u64 = 1_000_000_000_000_000_000;

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
        let cam = w
            .add_connection(
                "/cam/image/compressed",
                "sensor_msgs/CompressedImage",
                COMPRESSED_IMAGE_MD5,
                &compressed_image_definition(),
            )
            .unwrap();
        let js = w
            .add_connection(
                "/arm/joint_states",
                "sensor_msgs/JointState",
                JOINT_STATE_MD5,
                &joint_state_definition(),
            )
            .unwrap();
        let start = START + self.start_s * 1_000_000_000;
        let mut jpeg = Vec::new();
        let grey = (40 + self.seed * 37 % 180) as u8;
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode(&[grey; 16 * 12 * 3], 16, 12, image::ExtendedColorType::Rgb8)
            .unwrap();
        let names: Vec<String> = (0..self.joints).map(|j| format!("j{j}")).collect();
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
            let (sec, nsec) = ((abs / 1_000_000_000) as u32, (abs % 1_000_000_000) as u32);
            let mut p = Payload::new();
            p.header(i as u32, sec, nsec, "");
            if is_cam {
                p.string("jpeg").bytes(&jpeg);
                w.write(cam, abs, p.as_slice()).unwrap();
            } else {
                let t_ms = t as f64 / 1e6;
                let pos: Vec<f64> = (0..self.joints)
                    .map(|j| j as f64 * 1000.0 + t_ms + self.seed as f64)
                    .collect();
                p.string_array(&names)
                    .f64_array(&pos)
                    .f64_array(&[])
                    .f64_array(&[]);
                w.write(js, abs, p.as_slice()).unwrap();
            }
        }
        w.finish().unwrap();
    }
}

/// Size of the synthetic camera frames (SVT-AV1 needs at least 64 × 64).
pub const FRAME_W: u32 = 128;
pub const FRAME_H: u32 = 96;

fn tri(v: u32) -> u8 {
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
