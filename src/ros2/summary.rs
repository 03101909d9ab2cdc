//! What an SQLite recording holds, without reading its messages (`info`): counts and time
//! range from `metadata.yaml` and topics from the storage files' `topics` tables; for a bare
//! `.db3` (or a metadata.yaml whose counts disagree with the storage), per-topic counts and
//! times from one aggregate query per file.
//!
//! Opening a recording for reading ([`super::Ros2Bag`]) walks every row's key to cut read
//! units; a summary needs none of that. The metadata path reads the yaml, each file's topics,
//! its `count(*)` and `min`/`max(timestamp)` (answered from the timestamp index):
//! milliseconds for a GB-sized file. The time range is the storage's (rosbag2 has written
//! yaml ranges that miss the messages by minutes), except for FILE-compressed storage, which
//! would have to be decompressed: there topics, counts and range are the yaml's.

use std::path::{Path, PathBuf};

use super::metadata::Metadata;
use super::msgdef::full_type_name;
use super::sqlite::{storage_aggregates, storage_tables};
use super::storage_files;
use crate::error::Result;

/// One topic of the recording (merged across the files of a split bag by name and type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSummary {
    pub(crate) name: String,
    pub(crate) msgtype: String,
    pub(crate) messages: u64,
    /// First and last receive time; `None` when counted from metadata.yaml, which has no
    /// per-topic times.
    pub(crate) range: Option<(u64, u64)>,
}

/// Where a summary's counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountSource {
    /// metadata.yaml, checked against the storage files' row counts (or, for FILE-compressed
    /// storage that would have to be decompressed to be checked, against its own total).
    Metadata,
    /// `SELECT topic_id, count(*), min(timestamp), max(timestamp) ... GROUP BY topic_id`.
    Aggregates,
}

impl CountSource {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CountSource::Metadata => "metadata.yaml",
            CountSource::Aggregates => "storage (aggregate SQL)",
        }
    }
}

/// One storage file of the recording.
#[derive(Debug, Clone)]
pub(crate) struct FileSummary {
    pub(crate) size_bytes: u64,
    /// `none`, or `zstd` for rosbag2 FILE or MESSAGE compression.
    pub(crate) compression: &'static str,
}

/// Everything `info` says about an SQLite recording.
#[derive(Debug, Clone)]
pub(crate) struct SqliteSummary {
    pub(crate) with_metadata: bool,
    pub(crate) files: Vec<FileSummary>,
    pub(crate) messages: u64,
    pub(crate) range: Option<(u64, u64)>,
    pub(crate) topics: Vec<TopicSummary>,
    pub(crate) counted_from: CountSource,
}

/// Whether storage file `p` of a recording is MCAP (else SQLite).
fn is_mcap_file(p: &Path, meta: Option<&Metadata>) -> bool {
    let name = p.to_string_lossy();
    !name.ends_with(".db3")
        && !name.ends_with(".db3.zstd")
        && (name.ends_with(".mcap") || meta.is_some_and(|m| m.storage_identifier == "mcap"))
}

/// Whether two type names are the same type (old names have no `/msg/`).
fn same_type(a: &str, b: &str) -> bool {
    a == b || full_type_name(a) == full_type_name(b)
}

/// The summary of `path` if it is an SQLite recording (rosbag2 directory or bare `.db3` /
/// `.db3.zstd`); `None` for MCAP.
pub(crate) fn sqlite_summary(path: &Path) -> Result<Option<SqliteSummary>> {
    let (meta, paths) = storage_files(path)?;
    if paths.iter().any(|p| is_mcap_file(p, meta.as_ref())) {
        return Ok(None);
    }
    let file_compressed = |p: &Path| {
        meta.as_ref().is_some_and(Metadata::file_compressed)
            || p.to_string_lossy().ends_with(".db3.zstd")
    };
    let compressed_any = meta
        .as_ref()
        .is_some_and(|m| m.file_compressed() || m.message_compressed());
    let files: Vec<FileSummary> = paths
        .iter()
        .map(|p| FileSummary {
            size_bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            compression: if compressed_any || file_compressed(p) {
                "zstd"
            } else {
                "none"
            },
        })
        .collect();
    if let Some(m) = &meta
        && let Some(s) = from_metadata(m, &paths, &file_compressed)?
    {
        return Ok(Some(SqliteSummary { files, ..s }));
    }
    let mut topics: Vec<TopicSummary> = Vec::new();
    for p in &paths {
        let (file_topics, rows) = storage_aggregates(p, file_compressed(p))?;
        for t in &file_topics {
            let agg = rows.iter().find(|r| r.0 == t.id);
            add_topic(
                &mut topics,
                &t.name,
                &t.msgtype,
                agg.map_or(0, |a| a.1),
                agg.map(|a| (a.2, a.3)),
            );
        }
    }
    let messages = topics.iter().map(|t| t.messages).sum();
    let range = topics
        .iter()
        .filter_map(|t| t.range)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    Ok(Some(SqliteSummary {
        with_metadata: meta.is_some(),
        files,
        messages,
        range,
        topics,
        counted_from: CountSource::Aggregates,
    }))
}

/// Adds `n` messages of `name`/`msgtype` (merging a topic that another file also has).
fn add_topic(
    topics: &mut Vec<TopicSummary>,
    name: &str,
    msgtype: &str,
    n: u64,
    range: Option<(u64, u64)>,
) {
    match topics
        .iter_mut()
        .find(|t| t.name == name && same_type(&t.msgtype, msgtype))
    {
        Some(t) => {
            t.messages += n;
            t.range = match (t.range, range) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (a, b) => a.or(b),
            };
        }
        None => topics.push(TopicSummary {
            name: name.to_string(),
            msgtype: msgtype.to_string(),
            messages: n,
            range,
        }),
    }
}

/// The summary from metadata.yaml, or `None` when its counts cannot be trusted: its per-topic
/// counts do not add up to its total, or the storage files hold another number of rows.
/// Topics are the storage's (a topic the yaml leaves out has 0 messages once the totals
/// agree); a FILE-compressed bag's topics are the yaml's, since reading its tables would mean
/// decompressing every file.
fn from_metadata(
    m: &Metadata,
    paths: &[PathBuf],
    file_compressed: &dyn Fn(&Path) -> bool,
) -> Result<Option<SqliteSummary>> {
    let listed: u64 = m.topics.iter().map(|t| t.message_count).sum();
    if listed != m.message_count {
        crate::diag::warn(&format!(
            "{}: metadata.yaml's topic counts add up to {listed}, its message_count says {}; \
             counting the storage",
            paths
                .first()
                .map_or(String::new(), |p| p.display().to_string()),
            m.message_count
        ));
        return Ok(None);
    }
    let mut topics: Vec<TopicSummary> = Vec::new();
    // The yaml's range, unless the storage gives its own (rosbag2's FILE-compressed fixture
    // says 1604357089.9 + 60 s for messages of 1604356909.4 .. 1604357100.4).
    let mut range = (m.message_count > 0).then(|| {
        (
            m.starting_time_ns,
            m.starting_time_ns.saturating_add(m.duration_ns),
        )
    });
    if paths.iter().any(|p| file_compressed(p)) {
        for t in &m.topics {
            add_topic(&mut topics, &t.name, &t.msgtype, 0, None);
        }
    } else {
        let mut rows = 0u64;
        let mut storage_range: Option<(u64, u64)> = None;
        for p in paths {
            let st = storage_tables(p, false)?;
            rows += st.rows;
            storage_range = match (storage_range, st.range) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (a, b) => a.or(b),
            };
            for t in &st.topics {
                add_topic(&mut topics, &t.name, &t.msgtype, 0, None);
            }
        }
        range = storage_range;
        if rows != m.message_count {
            crate::diag::warn(&format!(
                "{}: metadata.yaml says {} messages, the storage holds {rows}; counting the storage",
                paths
                    .first()
                    .map_or(String::new(), |p| p.display().to_string()),
                m.message_count
            ));
            return Ok(None);
        }
    }
    for t in &mut topics {
        t.messages = m
            .topics
            .iter()
            .filter(|y| y.name == t.name && same_type(&y.msgtype, &t.msgtype))
            .map(|y| y.message_count)
            .sum();
    }
    // A yaml topic no storage table has (its messages would be lost to the counts): trust none.
    let matched: u64 = topics.iter().map(|t| t.messages).sum();
    if matched != m.message_count {
        crate::diag::warn(&format!(
            "{}: metadata.yaml's topics do not match the storage's topic tables; counting the storage",
            paths
                .first()
                .map_or(String::new(), |p| p.display().to_string()),
        ));
        return Ok(None);
    }
    Ok(Some(SqliteSummary {
        with_metadata: true,
        files: Vec::new(),
        messages: m.message_count,
        range,
        topics,
        counted_from: CountSource::Metadata,
    }))
}
