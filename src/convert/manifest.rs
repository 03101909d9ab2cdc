//! The conversion log `meta/conversion_log.json` kept inside every dataset `convert` writes: which
//! bags went in (identified by a fast fingerprint), under which config, with what result. It is
//! what makes a re-run idempotent (converted bags are skipped), lets a run append only new bags,
//! refuses a changed config, and gives `merge` the bag paths to order episodes by.
//!
//! Everything in it is deterministic for the same inputs except the `wall_s` timings, so two
//! runs over the same bags give byte-identical datasets apart from those numbers.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::ConvertConfig;
use crate::bag::BagFile;
use crate::error::{Error, Result};

pub(crate) use crate::dataset::MANIFEST_NAME;
/// Version of the log's layout.
const MANIFEST_FORMAT: u32 = 1;
/// Bytes hashed at each end of a bag for its fingerprint: 1 MiB.
const FINGERPRINT_EDGE_BYTES: u64 = 1 << 20;
/// Most bytes of the index section hashed for a fingerprint: 64 MiB (real index sections are a
/// few MiB; past this the head, tail and size still identify the file).
const FINGERPRINT_MAX_INDEX_BYTES: u64 = 64 << 20;
/// The tool version recorded with every bag.
pub(crate) const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Status of a bag in the log.
pub(crate) const CONVERTED: &str = "converted";
/// A bag that failed; it is tried again by the next run.
pub(crate) const FAILED: &str = "failed";

/// The whole log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    format: u32,
    /// Version of the tool that last wrote the dataset.
    pub(crate) tool_version: String,
    /// [`config_hash`] of `config`; a run with another config is refused (unless `--force`).
    pub(crate) config_hash: String,
    /// The config every episode was converted with (TOML), reused by runs without `--config`.
    pub(crate) config: String,
    /// Episode order of the dataset: `path` or `start-time`.
    pub(crate) order: String,
    /// Converted bags in episode order, then failed bags by path.
    pub(crate) bags: Vec<BagEntry>,
}

/// One bag in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BagEntry {
    /// Absolute path of the bag when it was converted.
    pub(crate) path: String,
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch (informative; identity is the fingerprint).
    pub(crate) mtime_ns: u64,
    /// See [`fingerprint`].
    pub(crate) fingerprint: String,
    pub(crate) config_hash: String,
    pub(crate) tool_version: String,
    /// [`CONVERTED`] or [`FAILED`].
    pub(crate) status: String,
    /// Start of the bag's recording (from its index), ns since the epoch.
    pub(crate) start_time_ns: Option<u64>,
    pub(crate) episode_index: Option<u64>,
    pub(crate) frames: Option<u64>,
    pub(crate) dropped: Option<u64>,
    pub(crate) task: Option<String>,
    /// Wall time of the conversion, seconds (the only non-deterministic field).
    pub(crate) wall_s: f64,
    pub(crate) error: Option<String>,
}

impl Manifest {
    /// A log with no bags yet.
    pub(crate) fn new(config: &ConvertConfig, order: &str) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            tool_version: TOOL_VERSION.to_string(),
            config_hash: config_hash(config),
            config: config.to_toml(),
            order: order.to_string(),
            bags: Vec::new(),
        }
    }

    /// Reads `DATASET/meta/conversion_log.json`; `Ok(None)` when the dataset has none.
    pub(crate) fn read(dataset: &Path) -> Result<Option<Manifest>> {
        let p = dataset.join("meta").join(MANIFEST_NAME);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&p, e)),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Dataset {
            path: p.clone(),
            what: format!("conversion log: {e}"),
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::Dataset {
                path: p,
                what: format!(
                    "conversion log format {} (this tool reads {MANIFEST_FORMAT})",
                    m.format
                ),
            });
        }
        Ok(Some(m))
    }

    /// The converted entry of this bag: same path and same fingerprint. (A copy of a bag under
    /// another path is another bag, as it is within one run.)
    pub(crate) fn converted_with(&self, path: &str, fingerprint: &str) -> Option<&BagEntry> {
        self.bags
            .iter()
            .find(|b| b.status == CONVERTED && b.path == path && b.fingerprint == fingerprint)
    }

    /// The converted entry of this path.
    pub(crate) fn converted_at(&self, path: &str) -> Option<&BagEntry> {
        self.bags
            .iter()
            .find(|b| b.status == CONVERTED && b.path == path)
    }

    /// Records a bag's outcome: a failed entry of the same path is replaced.
    pub(crate) fn record(&mut self, entry: BagEntry) {
        self.bags
            .retain(|b| !(b.status == FAILED && b.path == entry.path));
        self.bags.push(entry);
        self.sort();
    }

    /// Converted bags by episode index, then failed bags by path.
    pub(crate) fn sort(&mut self) {
        self.bags.sort_by(|a, b| {
            (a.episode_index.is_none(), a.episode_index, &a.path).cmp(&(
                b.episode_index.is_none(),
                b.episode_index,
                &b.path,
            ))
        });
    }

    /// The log as pretty JSON.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into()) + "\n"
    }
}

/// sha256 of the config's TOML text: the identity of "the same conversion". The `--task`
/// override is not part of it (a task may differ per run; it is recorded per bag).
pub(crate) fn config_hash(config: &ConvertConfig) -> String {
    hex(&Sha256::digest(config.to_toml().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size, mtime and fingerprint of a bag file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BagIdentity {
    pub(crate) size: u64,
    pub(crate) mtime_ns: u64,
    pub(crate) fingerprint: String,
}

/// The fast fingerprint of a bag: sha256 over a version tag, the file size (u64 LE), the first
/// and the last [`FINGERPRINT_EDGE_BYTES`], and the index section (`index_pos` to the end, at
/// most [`FINGERPRINT_MAX_INDEX_BYTES`]; absent when the header cannot be read). The index
/// section lists every chunk's position and time range and every connection, so a bag whose
/// messages change almost always changes it; reading it costs milliseconds on multi-GB bags.
pub(crate) fn fingerprint(path: &Path) -> Result<BagIdentity> {
    if path.is_dir() {
        return dir_fingerprint(path);
    }
    let io = |e| Error::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    let size = meta.len();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    let index_pos = BagFile::open(path)
        .ok()
        .map(|b| b.header().index_pos)
        .filter(|p| *p > 0 && *p < size);
    let mut h = Sha256::new();
    h.update(b"bag2dataset-fingerprint-v1");
    h.update(size.to_le_bytes());
    let mut hash_range = |from: u64, len: u64, h: &mut Sha256| -> Result<()> {
        f.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = (left.min(buf.len() as u64)) as usize;
            f.read_exact(&mut buf[..n]).map_err(io)?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    };
    let edge = size.min(FINGERPRINT_EDGE_BYTES);
    hash_range(0, edge, &mut h)?;
    hash_range(size - edge, edge, &mut h)?;
    h.update(b"index");
    if let Some(pos) = index_pos {
        hash_range(pos, (size - pos).min(FINGERPRINT_MAX_INDEX_BYTES), &mut h)?;
    }
    Ok(BagIdentity {
        size,
        mtime_ns,
        fingerprint: hex(&h.finalize()),
    })
}

/// A rosbag2 directory's fingerprint: its files' fingerprints (sorted by name) hashed
/// together; size is the sum and mtime the latest.
fn dir_fingerprint(dir: &Path) -> Result<BagIdentity> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut h = Sha256::new();
    h.update(b"bag2dataset-dir-fingerprint-v1");
    let (mut size, mut mtime_ns) = (0u64, 0u64);
    for f in files {
        let id = fingerprint(&f)?;
        h.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(id.fingerprint.as_bytes());
        size += id.size;
        mtime_ns = mtime_ns.max(id.mtime_ns);
    }
    Ok(BagIdentity {
        size,
        mtime_ns,
        fingerprint: hex(&h.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_size_and_content_changes() {
        let dir = std::env::temp_dir().join(format!("b2d-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.bag");
        std::fs::write(&p, vec![7u8; 3 << 20]).unwrap();
        let a = fingerprint(&p).unwrap();
        assert_eq!(a.size, 3 << 20);
        assert_eq!(a, fingerprint(&p).unwrap());
        let mut bytes = vec![7u8; 3 << 20];
        bytes[10] = 8;
        std::fs::write(&p, &bytes).unwrap();
        assert_ne!(a.fingerprint, fingerprint(&p).unwrap().fingerprint);
        std::fs::write(&p, vec![7u8; (3 << 20) + 1]).unwrap();
        assert_ne!(a.fingerprint, fingerprint(&p).unwrap().fingerprint);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn record_replaces_failures_and_sorts() {
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            tool_version: TOOL_VERSION.into(),
            config_hash: "h".into(),
            config: String::new(),
            order: "path".into(),
            bags: Vec::new(),
        };
        let e = |path: &str, ep: Option<u64>, status: &str| BagEntry {
            path: path.into(),
            size: 1,
            mtime_ns: 0,
            fingerprint: path.into(),
            config_hash: "h".into(),
            tool_version: TOOL_VERSION.into(),
            status: status.into(),
            start_time_ns: None,
            episode_index: ep,
            frames: None,
            dropped: None,
            task: None,
            wall_s: 0.0,
            error: None,
        };
        m.record(e("/b", None, FAILED));
        m.record(e("/c", Some(1), CONVERTED));
        m.record(e("/a", Some(0), CONVERTED));
        assert_eq!(m.bags.len(), 3);
        m.record(e("/b", Some(2), CONVERTED));
        let paths: Vec<&str> = m.bags.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/c", "/b"]);
        assert!(m.converted_with("/b", "/b").is_some());
        assert!(m.converted_with("/x", "/b").is_none());
    }
}
