//! The library's one error type. Variants carry the file, offset, topic or limit at fault.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading a bag, decoding messages or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a ROS1 bag (format 2.0) at all.
    #[error("{path}: not a ROS1 bag (format 2.0): {reason}")]
    NotABag { path: PathBuf, reason: String },
    /// The bag is damaged at a known offset: a record or a field is missing, short or lying.
    #[error("{path}: malformed bag at offset {offset}: {what}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// The bag's index contradicts itself: its chunk infos count messages its index-data
    /// records do not list (or the other way round). Readers fall back to scanning the chunks.
    #[error("{path}: inconsistent index at offset {offset}: {what}")]
    IndexMismatch {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A connection's message definition cannot be parsed.
    #[error(
        "{path}: topic {topic} (connection {conn}, type {msgtype}): bad message definition: {what}"
    )]
    Definition {
        path: PathBuf,
        topic: String,
        conn: u32,
        msgtype: String,
        what: String,
    },
    /// A message payload does not match its definition.
    #[error(
        "{path}: topic {topic} (connection {conn}) message at time {time_ns} ns: {what} at payload byte {offset}"
    )]
    Decode {
        path: PathBuf,
        topic: String,
        conn: u32,
        time_ns: u64,
        offset: usize,
        what: String,
    },
    /// One indivisible item does not fit under the memory ceiling.
    #[error(
        "{item} needs {needed} bytes but the memory ceiling of {ceiling} bytes leaves {available} for it; rerun with a larger --max-memory (at least {hint})"
    )]
    OverBudget {
        item: String,
        needed: u64,
        available: u64,
        ceiling: u64,
        hint: String,
    },
    /// The conversion configuration is invalid or does not match the bag.
    #[error("configuration: {0}")]
    Config(String),
    /// Another stage failed or the run was interrupted; this stage stopped without its own error.
    #[error("cancelled")]
    Cancelled,
    /// Writing the dataset failed.
    #[error("dataset {path}: {what}")]
    Dataset { path: PathBuf, what: String },
    /// A ROS 2 recording (rosbag2 directory, MCAP or SQLite file) cannot be read.
    #[error("{path}: {what}")]
    Recording { path: PathBuf, what: String },
    /// A memory ceiling asked for is above what the scheduler or the container allows.
    #[error("memory limit: {what}")]
    Limit { what: String },
    /// Encoding a video feature failed (ffmpeg missing, without the encoder, or died).
    #[error("video {key}: {what}")]
    Video { key: String, what: String },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A copy of this error (errors are not `Clone`: they hold `io::Error`); variants without
    /// their own copy become `Config` with the same message.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::OverBudget {
                item,
                needed,
                available,
                ceiling,
                hint,
            } => Error::OverBudget {
                item: item.clone(),
                needed: *needed,
                available: *available,
                ceiling: *ceiling,
                hint: hint.clone(),
            },
            Error::Decode {
                path,
                topic,
                conn,
                time_ns,
                offset,
                what,
            } => Error::Decode {
                path: path.clone(),
                topic: topic.clone(),
                conn: *conn,
                time_ns: *time_ns,
                offset: *offset,
                what: what.clone(),
            },
            Error::Malformed { path, offset, what } => Error::Malformed {
                path: path.clone(),
                offset: *offset,
                what: what.clone(),
            },
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::NotABag { path, reason } => Error::NotABag {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Dataset { path, what } => Error::Dataset {
                path: path.clone(),
                what: what.clone(),
            },
            Error::Config(what) => Error::Config(what.clone()),
            Error::Recording { path, what } => Error::Recording {
                path: path.clone(),
                what: what.clone(),
            },
            Error::Video { key, what } => Error::Video {
                key: key.clone(),
                what: what.clone(),
            },
            Error::Cancelled => Error::Cancelled,
            other => Error::Config(other.to_string()),
        }
    }
}
