//! Small rosbag2 SQLite files for tests, written with rusqlite: the rosbag2 schema (topics,
//! messages, optionally `timestamp_idx`), CDR payloads of std_msgs/String, JointState and
//! CompressedImage, rows inserted in any order the test wants.

#![allow(dead_code)]

use std::path::Path;

use rusqlite::{Connection, params};

/// A CDR payload (little endian) under construction; alignment relative to the byte after
/// the 4-byte encapsulation header, as rosbag2 writes it.
pub struct Cdr(Vec<u8>);

impl Default for Cdr {
    fn default() -> Self {
        Cdr(vec![0, 1, 0, 0])
    }
}

impl Cdr {
    fn align(&mut self, n: usize) {
        while !(self.0.len() - 4).is_multiple_of(n) {
            self.0.push(0);
        }
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.align(4);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32 + 1);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub fn f64s(&mut self, v: &[f64]) -> &mut Self {
        self.u32(v.len() as u32);
        if !v.is_empty() {
            self.align(8);
        }
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        self
    }
    pub fn header(&mut self, t_ns: u64, frame: &str) -> &mut Self {
        self.i32((t_ns / 1_000_000_000) as i32)
            .u32((t_ns % 1_000_000_000) as u32)
            .string(frame)
    }
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// std_msgs/msg/String.
pub fn string_msg(s: &str) -> Vec<u8> {
    Cdr::default().string(s).finish()
}

/// sensor_msgs/msg/JointState with positions only.
pub fn joint_state(t_ns: u64, positions: &[f64]) -> Vec<u8> {
    let mut c = Cdr::default();
    c.header(t_ns, "");
    c.u32(positions.len() as u32);
    for j in 0..positions.len() {
        c.string(&format!("j{j}"));
    }
    c.f64s(positions).f64s(&[]).f64s(&[]).finish()
}

/// sensor_msgs/msg/CompressedImage holding `jpeg`.
pub fn compressed_image(t_ns: u64, jpeg: &[u8]) -> Vec<u8> {
    Cdr::default()
        .header(t_ns, "cam")
        .string("jpeg")
        .bytes(jpeg)
        .finish()
}

/// A 16×12 JPEG of grey level `grey`, padded with comment segments to at least `size` bytes
/// (decoders skip them): a large message that still decodes.
pub fn padded_jpeg(grey: u8, size: usize) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode(&[grey; 16 * 12 * 3], 16, 12, image::ExtendedColorType::Rgb8)
        .expect("encode a JPEG");
    let mut out = jpeg[..2].to_vec();
    let mut k = 0u8;
    while out.len() + jpeg.len() < size {
        let n = (size - out.len() - jpeg.len()).clamp(16, 65_000);
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((n + 2) as u16).to_be_bytes());
        out.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(k)));
        k = k.wrapping_add(1);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// One rosbag2 SQLite storage file being written.
pub struct Db3 {
    pub db: Connection,
}

impl Db3 {
    /// Creates `path` with the rosbag2 tables (schema of Foxy–Humble, no definitions table);
    /// `time_index` adds rosbag2's `timestamp_idx`.
    pub fn create(path: &Path, time_index: bool) -> Db3 {
        let _ = std::fs::remove_file(path);
        let db = Connection::open(path).expect("create db3");
        db.execute_batch(
            "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
               serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
             CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,
               timestamp INTEGER NOT NULL, data BLOB NOT NULL);",
        )
        .expect("schema");
        if time_index {
            db.execute_batch("CREATE INDEX timestamp_idx ON messages (timestamp ASC);")
                .expect("index");
        }
        Db3 { db }
    }

    pub fn topic(&self, id: i64, name: &str, msgtype: &str) {
        self.db
            .execute(
                "INSERT INTO topics VALUES (?1, ?2, ?3, 'cdr', '')",
                params![id, name, msgtype],
            )
            .expect("topic row");
    }

    /// Inserts a message with row id `id`.
    pub fn message(&self, id: i64, topic: i64, t_ns: u64, data: &[u8]) {
        self.db
            .execute(
                "INSERT INTO messages VALUES (?1, ?2, ?3, ?4)",
                params![id, topic, t_ns as i64, data],
            )
            .expect("message row");
    }
}

/// A rosbag2 metadata.yaml (version 4) naming `files`, with `topics` as (name, type, count).
pub fn metadata_yaml(files: &[&str], topics: &[(&str, &str, u64)], start: u64, end: u64) -> String {
    let mut s = String::from(
        "rosbag2_bagfile_information:\n  version: 4\n  storage_identifier: sqlite3\n  relative_file_paths:\n",
    );
    for f in files {
        s.push_str(&format!("    - {f}\n"));
    }
    let total: u64 = topics.iter().map(|t| t.2).sum();
    s.push_str(&format!(
        "  duration:\n    nanoseconds: {}\n  starting_time:\n    nanoseconds_since_epoch: {start}\n  message_count: {total}\n  topics_with_message_count:\n",
        end - start
    ));
    for (name, ty, n) in topics {
        s.push_str(&format!(
            "    - topic_metadata:\n        name: {name}\n        type: {ty}\n        serialization_format: cdr\n        offered_qos_profiles: \"\"\n      message_count: {n}\n"
        ));
    }
    s.push_str("  compression_format: \"\"\n  compression_mode: \"\"\n");
    s
}
