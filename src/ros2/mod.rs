//! Reading ROS 2 recordings: a rosbag2 directory (`metadata.yaml` plus its storage files), a
//! bare `.mcap` file or a bare `.db3` file, as one recording.
//!
//! `Ros2Bag` describes the recording the way the rest of the crate knows a ROS1 bag: a
//! [`BagIndex`] whose connections are the storage files' topics/channels (numbered across the
//! files of a split bag) and whose chunks are read units (MCAP chunks in file order; runs of
//! SQLite rows in `(timestamp, id)` order), file after file. `read_unit` turns one unit into payloads; `msgdef` gives the CDR decode plans.

pub mod mcap;
mod metadata;
pub mod msgdef;
pub mod sqlite;
pub(crate) mod summary;

use std::path::{Path, PathBuf};

use self::mcap::{McapCompression, McapFile, McapUnit};
use crate::bag::{BagHeader, BagIndex, ChunkCompression, ChunkInfo, Connection};
use crate::error::{Error, Result};
use crate::msg::MessageSchema;
use metadata::Metadata;
use msgdef::DefinitionStore;
use sqlite::SqliteFile;

/// Largest decompressed read unit accepted (what a ROS1 chunk's 32-bit size allows).
const MAX_UNIT_BYTES: u64 = u32::MAX as u64;

/// One storage file of a recording.
#[derive(Debug)]
pub(crate) enum Storage {
    Mcap(McapFile),
    Sqlite(SqliteFile),
}

/// What one global connection id stands for.
#[derive(Debug, Clone)]
pub(crate) struct ConnSource {
    /// Index into the recording's storage files.
    pub(crate) file: usize,
    /// Topic id / channel id inside that file.
    pub(crate) local_id: i64,
    serialization_format: String,
    /// The definition the file stores for this type: `Some("")` is a type without fields.
    stored: Option<String>,
    /// The `.srv` text the file stores for the service of a service event.
    stored_service: Option<String>,
}

/// Where one read unit is.
#[derive(Debug, Clone, Copy)]
struct UnitSource {
    file: usize,
    unit: usize,
}

/// One message of a read unit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnitMessage {
    pub(crate) conn: u32,
    pub(crate) time_ns: u64,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// An open ROS 2 recording.
#[derive(Debug)]
pub struct Ros2Bag {
    pub(crate) path: PathBuf,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) files: Vec<Storage>,
    pub(crate) index: BagIndex,
    sources: Vec<ConnSource>,
    units: Vec<UnitSource>,
    store: DefinitionStore,
    /// Why a file was scanned rather than read from its summary, if one was.
    pub(crate) recovered: Option<String>,
}

/// Whether `path` looks like a ROS 2 recording: a directory with `metadata.yaml` or a
/// `.mcap` / `.db3` / `.db3.zstd` file.
pub(crate) fn is_ros2_path(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("metadata.yaml").is_file();
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".mcap") || name.ends_with(".db3") || name.ends_with(".db3.zstd")
}

/// The metadata.yaml of a rosbag2 directory (None for a bare file) and its storage files, in
/// the order of `relative_file_paths`.
fn storage_files(path: &Path) -> Result<(Option<Metadata>, Vec<PathBuf>)> {
    Ok(if path.is_dir() {
        let meta = Metadata::read(&path.join("metadata.yaml"))?;
        let mut files = Vec::new();
        for rel in &meta.relative_file_paths {
            // Paths may carry the bag directory's own name as a prefix: resolve by base name.
            let direct = path.join(rel);
            let by_name = Path::new(rel).file_name().map(|n| path.join(n));
            let p = if direct.is_file() {
                direct
            } else {
                match by_name {
                    Some(p) if p.is_file() => p,
                    _ => {
                        return Err(recording_err(
                            path,
                            format!("storage file {rel} named in metadata.yaml is missing"),
                        ));
                    }
                }
            };
            files.push(p);
        }
        if files.is_empty() {
            return Err(recording_err(
                path,
                "metadata.yaml names no storage files".into(),
            ));
        }
        (Some(meta), files)
    } else {
        (None, vec![path.to_path_buf()])
    })
}

fn recording_err(path: &Path, what: String) -> Error {
    Error::Recording {
        path: path.to_path_buf(),
        what,
    }
}

impl Ros2Bag {
    /// Opens a rosbag2 directory or a bare storage file with the standard definitions.
    pub fn open(path: &Path) -> Result<Ros2Bag> {
        Self::open_with(path, DefinitionStore::standard())
    }

    pub fn open_with(path: &Path, store: DefinitionStore) -> Result<Ros2Bag> {
        let (metadata, file_paths) = storage_files(path)?;
        let file_compressed = metadata.as_ref().is_some_and(Metadata::file_compressed);
        let message_compressed = metadata.as_ref().is_some_and(Metadata::message_compressed);
        if let Some(m) = &metadata
            && (file_compressed || message_compressed)
            && !m.compression_format.eq_ignore_ascii_case("zstd")
        {
            return Err(recording_err(
                path,
                format!("unsupported compression format {:?}", m.compression_format),
            ));
        }
        let mut files = Vec::new();
        for p in &file_paths {
            let name = p.to_string_lossy();
            let is_mcap = name.ends_with(".mcap")
                || metadata
                    .as_ref()
                    .is_some_and(|m| m.storage_identifier == "mcap");
            let is_zstd_file = file_compressed || name.ends_with(".db3.zstd");
            files.push(if is_mcap && !name.ends_with(".db3") {
                if message_compressed || is_zstd_file {
                    return Err(recording_err(
                        p,
                        "compressed rosbag2 MCAP storage (FILE/MESSAGE mode) is not supported"
                            .into(),
                    ));
                }
                Storage::Mcap(McapFile::open(p)?)
            } else {
                Storage::Sqlite(SqliteFile::open(p, is_zstd_file, message_compressed)?)
            });
        }
        let mut bag = Ros2Bag {
            path: path.to_path_buf(),
            metadata,
            files,
            index: BagIndex::from_parts(
                BagHeader {
                    index_pos: 0,
                    conn_count: 0,
                    chunk_count: 0,
                    data_start: 0,
                },
                0,
                Vec::new(),
                Vec::new(),
            ),
            sources: Vec::new(),
            units: Vec::new(),
            store,
            recovered: None,
        };
        bag.build_index();
        Ok(bag)
    }

    /// Connections (numbered across files) and units (file order).
    fn build_index(&mut self) {
        let mut connections = Vec::new();
        let mut chunks = Vec::new();
        let mut file_len = 0u64;
        for (fi, file) in self.files.iter().enumerate() {
            let first_conn = connections.len() as u32;
            match file {
                Storage::Mcap(f) => {
                    file_len += f.len;
                    if let Some(r) = &f.recovered {
                        self.recovered = Some(format!("{}: {r}", f.path.display()));
                    }
                    for c in &f.channels {
                        let id = connections.len() as u32;
                        let stored = match (c.schema_encoding.as_str(), &c.schema_data) {
                            ("ros2msg", Some(d)) => Some(d.clone()),
                            _ => None,
                        };
                        connections.push(Connection {
                            id,
                            topic: c.topic.clone(),
                            msgtype: c.schema_name.clone(),
                            md5sum: String::new(),
                            definition: stored.clone().unwrap_or_default(),
                            callerid: None,
                            latching: false,
                        });
                        self.sources.push(ConnSource {
                            file: fi,
                            local_id: c.id as i64,
                            serialization_format: c.message_encoding.clone(),
                            stored,
                            stored_service: None,
                        });
                    }
                    for (ui, u) in f.units.iter().enumerate() {
                        let counts = u
                            .counts
                            .iter()
                            .filter_map(|&(ch, n)| {
                                let k = f.channels.iter().position(|c| c.id == ch)?;
                                Some((first_conn + k as u32, n))
                            })
                            .collect();
                        chunks.push(ChunkInfo {
                            pos: chunks.len() as u64,
                            start_ns: u.start_ns,
                            end_ns: u.end_ns,
                            counts,
                            compression: match u.compression {
                                McapCompression::None => ChunkCompression::None,
                                McapCompression::Zstd => ChunkCompression::Zstd,
                                McapCompression::Lz4 => ChunkCompression::Lz4,
                            },
                            uncompressed_size: u.uncompressed_size.min(u32::MAX as u64) as u32,
                            data_offset: u.data_offset,
                            data_len: u.data_len.min(u32::MAX as u64) as u32,
                            partial: false,
                            loose: false,
                            headed: true,
                        });
                        self.units.push(UnitSource { file: fi, unit: ui });
                    }
                }
                Storage::Sqlite(f) => {
                    if let Ok(m) = std::fs::metadata(&f.path) {
                        file_len += m.len();
                    }
                    for t in &f.topics {
                        let id = connections.len() as u32;
                        let full = msgdef::full_type_name(&t.msgtype);
                        let stored = f
                            .definitions
                            .get(&t.msgtype)
                            .or_else(|| f.definitions.get(&full))
                            .filter(|(enc, _)| enc == "ros2msg")
                            .map(|(_, text)| text.clone());
                        let stored_service = full
                            .strip_suffix("_Event")
                            .filter(|s| s.contains("/srv/"))
                            .and_then(|s| f.definitions.get(s))
                            .filter(|(enc, _)| enc == "ros2msg")
                            .map(|(_, text)| text.clone());
                        connections.push(Connection {
                            id,
                            topic: t.name.clone(),
                            msgtype: t.msgtype.clone(),
                            md5sum: String::new(),
                            definition: stored.clone().unwrap_or_default(),
                            callerid: None,
                            latching: false,
                        });
                        self.sources.push(ConnSource {
                            file: fi,
                            local_id: t.id,
                            serialization_format: t.serialization_format.clone(),
                            stored,
                            stored_service,
                        });
                    }
                    for (ui, u) in f.units.iter().enumerate() {
                        let counts = u
                            .counts
                            .iter()
                            .filter_map(|c| {
                                let k = f.topics.iter().position(|t| t.id == c.topic)?;
                                Some((first_conn + k as u32, c.messages))
                            })
                            .collect();
                        chunks.push(ChunkInfo {
                            pos: chunks.len() as u64,
                            start_ns: u.start_ns,
                            end_ns: u.end_ns,
                            counts,
                            compression: if f.message_compressed {
                                ChunkCompression::Zstd
                            } else {
                                ChunkCompression::None
                            },
                            uncompressed_size: u.decompressed.min(u32::MAX as u64) as u32,
                            data_offset: 0,
                            data_len: u.stored.min(u32::MAX as u64) as u32,
                            partial: false,
                            loose: false,
                            headed: true,
                        });
                        self.units.push(UnitSource { file: fi, unit: ui });
                    }
                }
            }
        }
        let header = BagHeader {
            index_pos: 0,
            conn_count: connections.len() as u32,
            chunk_count: chunks.len() as u32,
            data_start: 0,
        };
        self.index = BagIndex::from_parts(header, file_len, connections, chunks);
    }

    /// The CDR decode plan of connection `conn`, or why there is none (unsupported
    /// serialization format, unknown type, bad definition).
    pub(crate) fn schema(&self, conn: u32) -> std::result::Result<MessageSchema, String> {
        let (Some(c), Some(src)) = (self.index.connection(conn), self.sources.get(conn as usize))
        else {
            return Err(format!("unknown connection {conn}"));
        };
        if src.serialization_format != "cdr" {
            return Err(format!(
                "unsupported serialization format {:?} (only cdr)",
                src.serialization_format
            ));
        }
        self.store.schema(
            &c.msgtype,
            src.stored.as_deref(),
            src.stored_service.as_deref(),
        )
    }

    /// Definitions this recording stores, as `(type, text)` (for lending to a sibling bag).
    pub fn stored_definitions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (c, s) in self.index.connections.iter().zip(&self.sources) {
            if let Some(d) = &s.stored {
                out.push((c.msgtype.clone(), d.clone()));
            }
        }
        out
    }

    /// The storage file and the file-local id of a connection.
    pub(crate) fn source(&self, conn: u32) -> Option<&ConnSource> {
        self.sources.get(conn as usize)
    }

    /// Heap bytes of what this recording keeps about its files (the index and the units'
    /// places; an MCAP file's unit list): what keeping it open costs a run.
    pub(crate) fn heap_bytes(&self) -> u64 {
        use std::mem::size_of;
        let units = self.units.capacity() * size_of::<UnitSource>();
        let mcap_units: usize = self
            .files
            .iter()
            .map(|f| match f {
                Storage::Mcap(m) => m
                    .units
                    .iter()
                    .map(|u| size_of::<McapUnit>() + u.counts.capacity() * size_of::<(u16, u32)>())
                    .sum(),
                Storage::Sqlite(_) => 0,
            })
            .sum();
        self.index.heap_bytes() + (units + mcap_units) as u64
    }

    /// Decompressed bytes unit `ci` needs in memory at most.
    pub(crate) fn unit_need(&self, ci: usize) -> u64 {
        let c = &self.index.chunks[ci];
        match c.compression {
            ChunkCompression::None => c.data_len as u64,
            _ => c.data_len as u64 + c.uncompressed_size as u64,
        }
    }

    /// Reads unit `ci`: its bytes and the messages of `wanted` connections (all when `None`)
    /// in storage order, and the problem that cut the walk short, if one did.
    #[allow(clippy::type_complexity)]
    pub(crate) fn read_unit(
        &self,
        ci: usize,
        wanted: Option<&[u32]>,
    ) -> Result<(Vec<u8>, Vec<UnitMessage>, Option<Error>)> {
        let Some(&UnitSource { file, unit }) = self.units.get(ci) else {
            return Err(recording_err(&self.path, format!("no read unit {ci}")));
        };
        let first_conn = self
            .sources
            .iter()
            .position(|s| s.file == file)
            .unwrap_or(0) as u32;
        let want = |conn: u32| wanted.is_none_or(|w| w.contains(&conn));
        match &self.files[file] {
            Storage::Mcap(f) => {
                let u = &f.units[unit];
                let (data, _) = f.read_unit(u, MAX_UNIT_BYTES)?;
                let (msgs, cut) = mcap::unit_messages(&data);
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    let Some(k) = f.channels.iter().position(|c| c.id == m.channel) else {
                        continue;
                    };
                    let conn = first_conn + k as u32;
                    if want(conn) {
                        out.push(UnitMessage {
                            conn,
                            time_ns: m.log_time,
                            start: m.start,
                            len: m.len,
                        });
                    }
                }
                let cut = cut.map(|(at, what)| Error::Malformed {
                    path: f.path.clone(),
                    offset: u.record_offset,
                    what: format!("chunk record walk stopped at byte {at}: {what}"),
                });
                Ok((data, out, cut))
            }
            Storage::Sqlite(f) => {
                let topics: Option<Vec<i64>> = wanted.map(|w| {
                    w.iter()
                        .filter_map(|&c| {
                            let s = self.sources.get(c as usize)?;
                            (s.file == file).then_some(s.local_id)
                        })
                        .collect()
                });
                let (data, rows) = f.read_unit(&f.units[unit], topics.as_deref())?;
                let out = rows
                    .into_iter()
                    .filter_map(|(tid, t, start, len)| {
                        let k = f.topics.iter().position(|x| x.id == tid)?;
                        Some(UnitMessage {
                            conn: first_conn + k as u32,
                            time_ns: t,
                            start,
                            len,
                        })
                    })
                    .collect();
                Ok((data, out, None))
            }
        }
    }

    /// Receive times of the messages of `conns`, sorted (8 bytes per message).
    pub(crate) fn topic_times(&self, conns: &[u32]) -> Result<Vec<u64>> {
        let mut times = Vec::new();
        for (fi, file) in self.files.iter().enumerate() {
            let mine: Vec<&ConnSource> = conns
                .iter()
                .filter_map(|&c| self.sources.get(c as usize))
                .filter(|s| s.file == fi)
                .collect();
            if mine.is_empty() {
                continue;
            }
            match file {
                Storage::Sqlite(f) => {
                    let ids: Vec<i64> = mine.iter().map(|s| s.local_id).collect();
                    f.topic_times(&ids, &mut times)?;
                }
                Storage::Mcap(f) => {
                    let ids: Vec<u16> = mine.iter().map(|s| s.local_id as u16).collect();
                    for u in &f.units {
                        if !u.counts.iter().any(|(c, n)| *n > 0 && ids.contains(c)) {
                            continue;
                        }
                        if u.index_len > 0 {
                            f.visit_message_index(u, |ch, t| {
                                if ids.contains(&ch) {
                                    times.push(t);
                                }
                            })?;
                        } else {
                            let (data, _) = f.read_unit(u, MAX_UNIT_BYTES)?;
                            let (msgs, _) = mcap::unit_messages(&data);
                            times.extend(
                                msgs.iter()
                                    .filter(|m| ids.contains(&m.channel))
                                    .map(|m| m.log_time),
                            );
                        }
                    }
                }
            }
        }
        times.sort_unstable();
        Ok(times)
    }
}
