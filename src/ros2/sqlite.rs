//! One rosbag2 SQLite file (`.db3`, schema 1–4), through `rusqlite` with the bundled SQLite.
//!
//! The database is opened read-only and immutable (no lock or journal files beside a bag that
//! may sit in a read-only directory), with a 1 MiB page cache and no mmap, so SQLite's own
//! memory stays a small fixed part of the ceiling. Messages are read in row order (`id`,
//! the order rosbag2 inserted them) in units of about [`UNIT_BYTES`]; each unit's time range
//! is known from an index pass, which lets the converter's watermarks handle units out of
//! time order exactly as it handles out-of-order ROS1 chunks. A file-compressed storage file
//! (`.db3.zstd`) is first decompressed, streaming, into a temporary file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Payload bytes per read unit (a unit holds at least one message): rosbag record's chunk
/// threshold (768 KiB), so a unit weighs in the chunk budget what a ROS1 chunk does.
pub const UNIT_BYTES: u64 = 768 << 10;

/// Most messages per read unit.
pub const UNIT_MESSAGES: u32 = 1 << 16;

/// SQLite page cache, in KiB (negative `cache_size` is KiB).
const CACHE_KIB: i64 = 1024;

/// A topic row of the storage file.
#[derive(Debug, Clone)]
pub struct SqlTopic {
    pub id: i64,
    pub name: String,
    pub msgtype: String,
    pub serialization_format: String,
}

/// A run of rows read as one unit.
#[derive(Debug, Clone)]
pub struct SqlUnit {
    pub first_id: i64,
    pub last_id: i64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub counts: Vec<(i64, u32)>,
    /// Stored payload bytes.
    pub stored: u64,
    /// Payload bytes after undoing message compression (= stored without it).
    pub decompressed: u64,
    /// Largest single payload after decompression.
    pub largest: u64,
}

/// A temporary file removed when dropped.
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An open SQLite storage file.
#[derive(Debug)]
pub struct SqliteFile {
    pub path: PathBuf,
    db: Mutex<Connection>,
    _temp: Option<TempFile>,
    pub topics: Vec<SqlTopic>,
    /// `message_definitions` rows: type → (encoding, text).
    pub definitions: HashMap<String, (String, String)>,
    pub schema_version: Option<i64>,
    pub units: Vec<SqlUnit>,
    /// Each payload is a zstd frame (rosbag2 MESSAGE compression).
    pub message_compressed: bool,
}

fn sql_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::Recording {
        path: path.to_path_buf(),
        what: format!("SQLite: {e}"),
    }
}

/// `file:` URI of a path, percent-encoding what a URI would read as syntax.
/// `immutable` skips locking and the WAL (read-only directories work).
fn uri_of(path: &Path, immutable: bool) -> String {
    let mut out = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' | b' ' | 0x80.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    if immutable {
        out.push_str("?immutable=1");
    }
    out
}

fn open_db(db_path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let db = Connection::open_with_flags(
        uri_of(db_path, immutable),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Touches the schema, so a database that cannot be read fails here.
    db.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(db)
}

/// Decompresses one zstd frame into a vector of at most `limit` bytes.
pub fn zstd_frame(data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, String> {
    let dec = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    dec.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

/// Decompressed size of one zstd frame, without keeping the output.
fn zstd_size(data: &[u8]) -> std::result::Result<u64, String> {
    let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    std::io::copy(&mut dec, &mut std::io::sink()).map_err(|e| format!("zstd: {e}"))
}

impl SqliteFile {
    /// Opens `path`; `file_compressed` when it is one zstd frame (`.db3.zstd`).
    pub fn open(
        path: &Path,
        file_compressed: bool,
        message_compressed: bool,
    ) -> Result<SqliteFile> {
        let (db_path, temp) = if file_compressed {
            let tmp = std::env::temp_dir().join(format!(
                "bag2dataset-{}-{}.db3",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let guard = TempFile(tmp.clone());
            let src = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut dec = zstd::stream::read::Decoder::new(src).map_err(|e| Error::io(path, e))?;
            let mut out = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            std::io::copy(&mut dec, &mut out).map_err(|e| Error::Recording {
                path: path.to_path_buf(),
                what: format!("decompressing the zstd storage file: {e}"),
            })?;
            (tmp, Some(guard))
        } else {
            (path.to_path_buf(), None)
        };
        let mut head = [0u8; 16];
        let magic_ok = std::fs::File::open(&db_path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"SQLite format 3\0";
        if !magic_ok {
            return Err(Error::Recording {
                path: path.to_path_buf(),
                what: "not an SQLite database".into(),
            });
        }
        // A non-empty write-ahead log (a WAL-mode recording not checkpointed) holds messages
        // that an immutable open would not see: read it through SQLite's locking then.
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let has_wal = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
        let db = match has_wal.then(|| open_db(&db_path, false)) {
            Some(Ok(db)) => db,
            Some(Err(e)) => {
                crate::diag::warn(&format!(
                    "{}: cannot read its write-ahead log ({e}); messages still in it are not read",
                    path.display()
                ));
                open_db(&db_path, true).map_err(|e| sql_err(path, e))?
            }
            None => open_db(&db_path, true).map_err(|e| sql_err(path, e))?,
        };
        db.execute_batch(&format!(
            "PRAGMA cache_size = -{CACHE_KIB}; PRAGMA mmap_size = 0; PRAGMA temp_store = FILE;"
        ))
        .map_err(|e| sql_err(path, e))?;
        let tables: Vec<String> = {
            let mut st = db
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(|e| sql_err(path, e))?;
            st.query_map([], |r| r.get(0))
                .map_err(|e| sql_err(path, e))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| sql_err(path, e))?
        };
        for t in ["topics", "messages"] {
            if !tables.iter().any(|x| x == t) {
                return Err(Error::Recording {
                    path: path.to_path_buf(),
                    what: format!("not a rosbag2 database: no {t} table"),
                });
            }
        }
        let topics = {
            let mut st = db
                .prepare("SELECT id, name, type, serialization_format FROM topics ORDER BY id")
                .map_err(|e| sql_err(path, e))?;
            st.query_map([], |r| {
                Ok(SqlTopic {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    msgtype: r.get(2)?,
                    serialization_format: r.get(3)?,
                })
            })
            .map_err(|e| sql_err(path, e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| sql_err(path, e))?
        };
        let mut definitions = HashMap::new();
        if tables.iter().any(|x| x == "message_definitions") {
            let mut st = db
                .prepare(
                    "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions ORDER BY id",
                )
                .map_err(|e| sql_err(path, e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| sql_err(path, e))?;
            for row in rows {
                let (t, enc, text) = row.map_err(|e| sql_err(path, e))?;
                definitions.entry(t).or_insert((enc, text));
            }
        }
        let schema_version = if tables.iter().any(|x| x == "schema") {
            db.query_row("SELECT MAX(schema_version) FROM schema", [], |r| r.get(0))
                .ok()
        } else {
            None
        };
        let mut f = SqliteFile {
            path: path.to_path_buf(),
            db: Mutex::new(db),
            _temp: temp,
            topics,
            definitions,
            schema_version,
            units: Vec::new(),
            message_compressed,
        };
        f.units = f.index_units()?;
        Ok(f)
    }

    fn with_db<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let db = self.db.lock().map_err(|_| Error::Recording {
            path: self.path.clone(),
            what: "SQLite connection poisoned".into(),
        })?;
        f(&db).map_err(|e| sql_err(&self.path, e))
    }

    /// One pass over the rows in id order (sizes only, unless messages are compressed):
    /// the read units with their time ranges and counts.
    fn index_units(&self) -> Result<Vec<SqlUnit>> {
        let compressed = self.message_compressed;
        let mut failure: Option<String> = None;
        let units = self.with_db(|db| {
            let sql = if compressed {
                "SELECT id, topic_id, timestamp, data FROM messages ORDER BY id"
            } else {
                "SELECT id, topic_id, timestamp, length(data) FROM messages ORDER BY id"
            };
            let mut st = db.prepare(sql)?;
            let mut rows = st.query([])?;
            let mut units: Vec<SqlUnit> = Vec::new();
            let mut cur: Option<SqlUnit> = None;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let topic: i64 = r.get(1)?;
                let t = r.get::<_, i64>(2)?.max(0) as u64;
                let (stored, size) = if compressed {
                    let blob = r.get_ref(3)?.as_blob().unwrap_or_default();
                    match zstd_size(blob) {
                        Ok(size) => (blob.len() as u64, size),
                        Err(what) => {
                            failure = Some(format!("compressed message {id}: {what}"));
                            break;
                        }
                    }
                } else {
                    let n = r.get::<_, i64>(3)?.max(0) as u64;
                    (n, n)
                };
                let u = cur.get_or_insert(SqlUnit {
                    first_id: id,
                    last_id: id,
                    start_ns: t,
                    end_ns: t,
                    counts: Vec::new(),
                    stored: 0,
                    decompressed: 0,
                    largest: 0,
                });
                u.last_id = id;
                u.start_ns = u.start_ns.min(t);
                u.end_ns = u.end_ns.max(t);
                u.stored += stored;
                u.decompressed += size;
                u.largest = u.largest.max(size);
                match u.counts.iter_mut().find(|(c, _)| *c == topic) {
                    Some((_, n)) => *n += 1,
                    None => u.counts.push((topic, 1)),
                }
                let n: u32 = u.counts.iter().map(|(_, n)| n).sum();
                if u.decompressed >= UNIT_BYTES || n >= UNIT_MESSAGES {
                    units.extend(cur.take());
                }
            }
            units.extend(cur.take());
            Ok(units)
        })?;
        match failure {
            Some(what) => Err(Error::Recording {
                path: self.path.clone(),
                what,
            }),
            None => Ok(units),
        }
    }

    /// Reads one unit's messages of `wanted` topics (all when `None`): payloads appended to one
    /// buffer (decompressed when messages are compressed), and `(topic id, time, start, len)`.
    #[allow(clippy::type_complexity)]
    pub fn read_unit(
        &self,
        unit: &SqlUnit,
        wanted: Option<&[i64]>,
    ) -> Result<(Vec<u8>, Vec<(i64, u64, usize, usize)>)> {
        let compressed = self.message_compressed;
        let capacity = if wanted.is_none() {
            unit.decompressed
        } else {
            0
        };
        let mut buf: Vec<u8> = Vec::with_capacity(capacity as usize);
        let mut msgs = Vec::new();
        let mut failure: Option<String> = None;
        self.with_db(|db| {
            let mut st = db.prepare_cached(
                "SELECT topic_id, timestamp, data FROM messages WHERE id >= ?1 AND id <= ?2 ORDER BY id",
            )?;
            let mut rows = st.query([unit.first_id, unit.last_id])?;
            while let Some(r) = rows.next()? {
                let topic: i64 = r.get(0)?;
                if wanted.is_some_and(|w| !w.contains(&topic)) {
                    continue;
                }
                let t = r.get::<_, i64>(1)?.max(0) as u64;
                let blob = r.get_ref(2)?.as_blob().unwrap_or_default();
                let start = buf.len();
                if compressed {
                    // The index pass measured every frame: none may grow past the largest.
                    match zstd_frame(blob, unit.largest) {
                        Ok(d) => buf.extend_from_slice(&d),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                } else {
                    buf.extend_from_slice(blob);
                }
                msgs.push((topic, t, start, buf.len() - start));
            }
            Ok(())
        })?;
        if let Some(what) = failure {
            return Err(Error::Recording {
                path: self.path.clone(),
                what: format!("a compressed message: {what}"),
            });
        }
        Ok((buf, msgs))
    }

    /// Receive times of the messages of `topics`, unsorted.
    pub fn topic_times(&self, topics: &[i64], out: &mut Vec<u64>) -> Result<()> {
        self.with_db(|db| {
            let mut st = db.prepare("SELECT timestamp FROM messages WHERE topic_id = ?1")?;
            for &t in topics {
                let rows = st.query_map([t], |r| r.get::<_, i64>(0))?;
                for r in rows {
                    out.push(r?.max(0) as u64);
                }
            }
            Ok(())
        })
    }
}

static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
