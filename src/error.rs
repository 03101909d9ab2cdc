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
    /// The command line asks for something that cannot be done (no inputs, a bad shard, ...).
    #[error("{0}")]
    Usage(String),
    /// A recording holds nothing the run can use (e.g. no frame survives alignment).
    #[error("{path}: {what}")]
    Content { path: PathBuf, what: String },
    /// Every input of a run failed; each error is listed.
    #[error("no bag could be converted:\n  {}", .errors.join("\n  "))]
    NoneConverted { errors: Vec<String> },
    /// Reading or writing a Parquet file failed.
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building or reading Arrow arrays failed.
    #[error("{path}: arrow: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A worker thread could not be started or panicked.
    #[error("the {stage} thread {what}")]
    Thread {
        stage: String,
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// A state the code rules out was reached: a bug in bag2dataset, not in the input.
    #[error("internal error (a bug in bag2dataset, please report it): {0}")]
    Internal(String),
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
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// One indivisible item does not fit: `needed` bytes where the ceiling `ceiling` leaves
    /// `available`. The hint is [`rerun_ceiling`], the one formula for "rerun with more".
    pub(crate) fn over_budget(
        item: impl Into<String>,
        needed: u64,
        available: u64,
        ceiling: u64,
    ) -> Self {
        Error::OverBudget {
            item: item.into(),
            needed,
            available,
            ceiling,
            hint: crate::units::format_bytes(rerun_ceiling(needed, available, ceiling)),
        }
    }

    /// A thread that panicked, with the panic's message when it carried one.
    pub(crate) fn thread_panicked(stage: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Error::Thread {
            stage: stage.to_string(),
            what: match msg {
                Some(m) => format!("panicked: {m}"),
                None => "panicked".to_string(),
            },
            source: None,
        }
    }

    /// A thread that could not be started.
    pub(crate) fn thread_start(stage: &str, source: std::io::Error) -> Self {
        Error::Thread {
            stage: stage.to_string(),
            what: "could not be started".to_string(),
            source: Some(source),
        }
    }

    /// Maps a Parquet error on `path`.
    pub(crate) fn parquet(
        path: &std::path::Path,
    ) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
        move |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Maps an Arrow error on `path`.
    pub(crate) fn arrow(path: &std::path::Path) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
        move |source| Error::Arrow {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The `--max-memory` to suggest when `needed` bytes did not fit where a ceiling of `ceiling`
/// left `available`: shares of the ceiling grow with it, so scale by `needed / available`,
/// add an eighth for what the measurement cannot see, round up to a MiB.
pub(crate) fn rerun_ceiling(needed: u64, available: u64, ceiling: u64) -> u64 {
    let scaled = (u128::from(ceiling.max(1)) * u128::from(needed) / u128::from(available.max(1)))
        .max(u128::from(needed));
    let with_margin = scaled + scaled / 8;
    u64::try_from(with_margin.min(u128::from(u64::MAX / 2)))
        .unwrap_or(u64::MAX / 2)
        .next_multiple_of(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rerun_hint_holds_the_item() {
        // The whole ceiling was available: the hint is the need plus a margin.
        let h = rerun_ceiling(100 << 20, 64 << 20, 64 << 20);
        assert!(h >= 100 << 20 && h.is_multiple_of(1 << 20), "{h}");
        // A quarter share of a 64 MiB ceiling held 16 MiB; 32 MiB need twice the ceiling.
        let h = rerun_ceiling(32 << 20, 16 << 20, 64 << 20);
        assert!(h >= 128 << 20, "{h}");
        assert!(rerun_ceiling(u64::MAX, 1, u64::MAX).is_multiple_of(1 << 20));
    }
}
