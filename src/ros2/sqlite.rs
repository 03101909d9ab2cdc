//! One rosbag2 SQLite file (`.db3`, schema 1–4), through `rusqlite` with the bundled SQLite.
//!
//! The database is opened read-only and immutable (no lock or journal files beside a bag that
//! may sit in a read-only directory), with a [`CACHE_KIB`] page cache, no mmap and temporary
//! storage on disk, so SQLite's own memory stays a small fixed part of the ceiling.
//!
//! Messages are read in receive-time order, `(timestamp, id)`, by a keyset cursor: an index
//! pass walks the keys once and cuts them into units of about [`UNIT_BYTES`] of payload; a
//! unit is then read as `WHERE (timestamp, id) >= (first key) ORDER BY timestamp, id LIMIT n`,
//! which SQLite answers by seeking in an index, so a unit costs its own rows only and no query
//! ever sorts. The order comes from rosbag2's `timestamp_idx`; a file without it (rosbag2
//! before Foxy, other writers) gets a temporary `(timestamp, id)` table keyed by both, filled
//! once at open by one scan of the table, in SQLite temp storage on disk (never in RAM): about
//! 20 bytes of temp disk per message. A file-compressed storage file (`.db3.zstd`) is
//! first decompressed, streaming, into a temporary file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Payload bytes per read unit, 512 KiB: a unit closes before a message would take it past
/// this, so a unit is at most this or one larger message alone. Below rosbag record's 768 KiB
/// chunk threshold: besides the unit, SQLite holds its own copy of the blob being read.
pub const UNIT_BYTES: u64 = 512 << 10;

/// Most messages per read unit.
const UNIT_MESSAGES: u32 = 1 << 16;

/// SQLite page cache of each database (the file and its temp database), in KiB (negative
/// `cache_size` is KiB).
const CACHE_KIB: i64 = 256;

/// The temporary `(timestamp, id)` table of a file without a time index.
const ORDER_TABLE: &str = "b2d_order";

/// A topic row of the storage file.
#[derive(Debug, Clone)]
pub(crate) struct SqlTopic {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) msgtype: String,
    pub(crate) serialization_format: String,
}

/// One topic's part of a read unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicShare {
    pub(crate) topic: i64,
    pub(crate) messages: u32,
    /// Payload bytes after undoing message compression.
    bytes: u64,
}

/// A run of rows, consecutive in `(timestamp, id)` order, read as one unit.
#[derive(Debug, Clone)]
pub(crate) struct SqlUnit {
    /// `(timestamp, id)` of the first row, as stored (the cursor's seek key).
    first_key: (i64, i64),
    /// Rows in the unit (every topic).
    messages: u32,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) counts: Vec<TopicShare>,
    /// Stored payload bytes.
    pub(crate) stored: u64,
    /// Payload bytes after undoing message compression (= stored without it).
    pub(crate) decompressed: u64,
    /// Largest single payload after decompression.
    largest: u64,
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
    pub(crate) path: PathBuf,
    db: Mutex<Connection>,
    _temp: Option<TempFile>,
    pub(crate) topics: Vec<SqlTopic>,
    /// `message_definitions` rows: type → (encoding, text).
    pub(crate) definitions: HashMap<String, (String, String)>,
    pub(crate) units: Vec<SqlUnit>,
    /// Each payload is a zstd frame (rosbag2 MESSAGE compression).
    pub(crate) message_compressed: bool,
    /// Where the time order comes from.
    pub order: TimeOrder,
}

/// Where a file's `(timestamp, id)` order comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrder {
    /// An index of the file whose first column is `timestamp` (rosbag2's `timestamp_idx`).
    Index,
    /// A temporary table built at open (SQLite temp storage, on disk).
    TempTable,
}

impl TimeOrder {
    /// `FROM` clause and the key columns of the ordered walk.
    fn source(self) -> (String, &'static str, &'static str) {
        match self {
            TimeOrder::Index => ("main.messages AS m".into(), "m.timestamp", "m.id"),
            TimeOrder::TempTable => (
                // CROSS JOIN keeps the order table outermost: rows come in its key order and
                // each message is one rowid lookup.
                format!("temp.{ORDER_TABLE} AS o CROSS JOIN main.messages AS m ON m.id = o.id"),
                "o.timestamp",
                "o.id",
            ),
        }
    }
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
fn zstd_frame(data: &[u8], limit: u64) -> std::result::Result<Vec<u8>, String> {
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

/// Opens `path` read-only with SQLite's memory bounded: page cache [`CACHE_KIB`], no mmap,
/// temporary storage in files. `file_compressed` when it is one zstd frame (`.db3.zstd`): it is
/// decompressed, streaming, into a temporary file first (removed when the guard drops).
fn open_bounded(path: &Path, file_compressed: bool) -> Result<(Connection, Option<TempFile>)> {
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
    Ok((db, temp))
}

/// Names of the tables of `db`.
fn table_names(db: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    st.query_map([], |r| r.get(0))?.collect()
}

/// The `topics` table (after checking that `topics` and `messages` exist).
fn read_topics(path: &Path, db: &Connection, tables: &[String]) -> Result<Vec<SqlTopic>> {
    for t in ["topics", "messages"] {
        if !tables.iter().any(|x| x == t) {
            return Err(Error::Recording {
                path: path.to_path_buf(),
                what: format!("not a rosbag2 database: no {t} table"),
            });
        }
    }
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
    .map_err(|e| sql_err(path, e))
}

/// Whether `messages` has an index whose first column is `timestamp` (any name: rosbag2 calls
/// it `timestamp_idx`), which gives the `(timestamp, id)` order without sorting.
fn has_time_index(db: &Connection) -> rusqlite::Result<bool> {
    let names: Vec<String> = {
        let mut st = db.prepare("SELECT name FROM pragma_index_list('messages')")?;
        st.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut st = db.prepare("SELECT name FROM pragma_index_info(?1) WHERE seqno = 0")?;
    for n in names {
        let first: Option<String> = st.query_row([&n], |r| r.get(0)).ok();
        if first.as_deref() == Some("timestamp") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a summary reads of one storage file without reading a message.
#[derive(Debug, Clone)]
pub(crate) struct StorageTables {
    pub(crate) topics: Vec<SqlTopic>,
    /// `count(*)`, which SQLite answers from its smallest index.
    pub(crate) rows: u64,
    /// `min(timestamp)`, `max(timestamp)`: two seeks in the timestamp index (a scan without it).
    pub(crate) range: Option<(u64, u64)>,
}

/// The topics of one storage file, its row count and time range.
pub(crate) fn storage_tables(path: &Path, file_compressed: bool) -> Result<StorageTables> {
    let (db, _temp) = open_bounded(path, file_compressed)?;
    let tables = table_names(&db).map_err(|e| sql_err(path, e))?;
    let topics = read_topics(path, &db, &tables)?;
    let rows = db
        .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
        .map_err(|e| sql_err(path, e))?;
    // One aggregate per query: SQLite answers a lone min() or max() with one index seek.
    let bound = |sql: &str| {
        db.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .map_err(|e| sql_err(path, e))
    };
    let lo = bound("SELECT min(timestamp) FROM messages")?;
    let hi = bound("SELECT max(timestamp) FROM messages")?;
    Ok(StorageTables {
        topics,
        rows: rows.max(0) as u64,
        range: lo.zip(hi).map(|(a, b)| (a.max(0) as u64, b.max(0) as u64)),
    })
}

/// Per-topic `(topic id, count, first, last)` and the file's topics by aggregate SQL: one
/// walk over the table's rows that reads the leading columns of each record, never a
/// payload's overflow pages; its only temp B-tree holds one row per topic.
#[allow(clippy::type_complexity)]
pub(crate) fn storage_aggregates(
    path: &Path,
    file_compressed: bool,
) -> Result<(Vec<SqlTopic>, Vec<(i64, u64, u64, u64)>)> {
    let (db, _temp) = open_bounded(path, file_compressed)?;
    let tables = table_names(&db).map_err(|e| sql_err(path, e))?;
    let topics = read_topics(path, &db, &tables)?;
    let mut st = db
        .prepare(
            "SELECT topic_id, count(*), min(timestamp), max(timestamp) FROM messages GROUP BY topic_id",
        )
        .map_err(|e| sql_err(path, e))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?.max(0) as u64,
                r.get::<_, i64>(2)?.max(0) as u64,
                r.get::<_, i64>(3)?.max(0) as u64,
            ))
        })
        .map_err(|e| sql_err(path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| sql_err(path, e))?;
    Ok((topics, rows))
}

impl SqliteFile {
    /// Opens `path`; `file_compressed` when it is one zstd frame (`.db3.zstd`). Builds the
    /// temporary time order if the file has no time index, then runs the index pass.
    pub fn open(
        path: &Path,
        file_compressed: bool,
        message_compressed: bool,
    ) -> Result<SqliteFile> {
        let (db, temp) = open_bounded(path, file_compressed)?;
        let tables = table_names(&db).map_err(|e| sql_err(path, e))?;
        let topics = read_topics(path, &db, &tables)?;
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
        let order = if has_time_index(&db).map_err(|e| sql_err(path, e))? {
            TimeOrder::Index
        } else {
            // The temp database gets the same small cache. Keys go into the keyed table in row
            // order, no ORDER BY: the B-tree puts them in order page by page through that
            // cache (rows are near time order in practice, so mostly appends), where an ORDER
            // BY would run SQLite's sorter, whose in-memory runs are at least 250 pages and
            // measured 1.4-2.5 MiB more peak RSS on the 1 GB file.
            db.execute_batch(&format!(
                "CREATE TEMP TABLE {ORDER_TABLE} (timestamp INTEGER NOT NULL, id INTEGER NOT NULL, \
                 PRIMARY KEY (timestamp, id)) WITHOUT ROWID;
                 PRAGMA temp.cache_size = -{CACHE_KIB};
                 INSERT INTO temp.{ORDER_TABLE} SELECT timestamp, id FROM main.messages;"
            ))
            .map_err(|e| Error::Recording {
                path: path.to_path_buf(),
                what: format!(
                    "SQLite: building the temporary time order (the file has no timestamp index): {e}"
                ),
            })?;
            TimeOrder::TempTable
        };
        let mut f = SqliteFile {
            path: path.to_path_buf(),
            db: Mutex::new(db),
            _temp: temp,
            topics,
            definitions,
            units: Vec::new(),
            message_compressed,
            order,
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

    /// The index pass's query: every row's key, topic and payload size (the payload itself
    /// only when messages are compressed, to measure it), in `(timestamp, id)` order.
    fn index_sql(&self) -> String {
        let (from, ts, id) = self.order.source();
        let data = if self.message_compressed {
            "m.data"
        } else {
            "length(m.data)"
        };
        format!("SELECT {id}, m.topic_id, {ts}, {data} FROM {from} ORDER BY {ts}, {id}")
    }

    /// A unit's query: the `LIMIT ?3` rows from key `(?1, ?2)` on, of `topics` only (all when
    /// `None`; ids are integers, written into the SQL).
    fn unit_sql(&self, topics: Option<&[i64]>) -> String {
        let (from, ts, id) = self.order.source();
        let filter = match topics {
            Some(t) => format!(
                " AND m.topic_id IN ({})",
                t.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
            ),
            None => String::new(),
        };
        format!(
            "SELECT m.topic_id, {ts}, m.data FROM {from} WHERE ({ts}, {id}) >= (?1, ?2){filter} \
             ORDER BY {ts}, {id} LIMIT ?3"
        )
    }

    /// The plans SQLite chose for the index pass and a unit read (`EXPLAIN QUERY PLAN` text),
    /// so tests can check that no query sorts.
    pub fn query_plans(&self) -> Result<Vec<String>> {
        let sqls = [
            self.index_sql(),
            self.unit_sql(None),
            self.unit_sql(Some(&[1])),
        ];
        self.with_db(|db| {
            let mut out = Vec::new();
            for sql in &sqls {
                let mut st = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let n = st.parameter_count();
                let params: Vec<i64> = vec![0; n];
                let rows = st.query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })?;
                for r in rows {
                    out.push(r?);
                }
            }
            Ok(out)
        })
    }

    /// One pass over the keys in `(timestamp, id)` order (sizes only, unless messages are
    /// compressed): the read units with their time ranges and per-topic counts and bytes.
    fn index_units(&self) -> Result<Vec<SqlUnit>> {
        let compressed = self.message_compressed;
        let sql = self.index_sql();
        let mut failure: Option<String> = None;
        let units = self.with_db(|db| {
            let mut st = db.prepare(&sql)?;
            let mut rows = st.query([])?;
            let mut units: Vec<SqlUnit> = Vec::new();
            let mut cur: Option<SqlUnit> = None;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let topic: i64 = r.get(1)?;
                let ts: i64 = r.get(2)?;
                let t = ts.max(0) as u64;
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
                // Close the unit before this message would take it past the unit size.
                if cur.as_ref().is_some_and(|u| {
                    u.decompressed + size > UNIT_BYTES || u.messages >= UNIT_MESSAGES
                }) {
                    units.extend(cur.take());
                }
                let u = cur.get_or_insert(SqlUnit {
                    first_key: (ts, id),
                    messages: 0,
                    start_ns: t,
                    end_ns: t,
                    counts: Vec::new(),
                    stored: 0,
                    decompressed: 0,
                    largest: 0,
                });
                u.messages += 1;
                u.start_ns = u.start_ns.min(t);
                u.end_ns = u.end_ns.max(t);
                u.stored += stored;
                u.decompressed += size;
                u.largest = u.largest.max(size);
                match u.counts.iter_mut().find(|c| c.topic == topic) {
                    Some(c) => {
                        c.messages += 1;
                        c.bytes += size;
                    }
                    None => u.counts.push(TopicShare {
                        topic,
                        messages: 1,
                        bytes: size,
                    }),
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

    /// Reads one unit's messages of `wanted` topics (all when `None`) in `(timestamp, id)`
    /// order: payloads appended to one buffer sized exactly from the index pass (decompressed
    /// when messages are compressed), and `(topic id, time, start, len)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn read_unit(
        &self,
        unit: &SqlUnit,
        wanted: Option<&[i64]>,
    ) -> Result<(Vec<u8>, Vec<(i64, u64, usize, usize)>)> {
        let compressed = self.message_compressed;
        // Topics of this unit that are wanted; `None` when that is all of them.
        let mine: Vec<&TopicShare> = unit
            .counts
            .iter()
            .filter(|c| wanted.is_none_or(|w| w.contains(&c.topic)))
            .collect();
        let (capacity, rows): (u64, u32) = mine
            .iter()
            .fold((0, 0), |(b, n), c| (b + c.bytes, n + c.messages));
        let topics: Option<Vec<i64>> =
            (mine.len() < unit.counts.len()).then(|| mine.iter().map(|c| c.topic).collect());
        let mut buf: Vec<u8> = Vec::new();
        let mut msgs = Vec::with_capacity(rows as usize);
        if rows == 0 {
            return Ok((buf, msgs));
        }
        buf.reserve_exact(capacity as usize);
        let sql = self.unit_sql(topics.as_deref());
        let mut failure: Option<String> = None;
        self.with_db(|db| {
            let mut st = db.prepare_cached(&sql)?;
            let mut it = st.query(rusqlite::params![unit.first_key.0, unit.first_key.1, rows])?;
            while let Some(r) = it.next()? {
                let topic: i64 = r.get(0)?;
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
                if buf.len() as u64 > capacity {
                    failure = Some(format!(
                        "the unit from key {:?} holds more than the {capacity} bytes the index pass \
                         measured (the file changed while it was read?)",
                        unit.first_key
                    ));
                    break;
                }
                msgs.push((topic, t, start, buf.len() - start));
            }
            Ok(())
        })?;
        if let Some(what) = failure {
            return Err(Error::Recording {
                path: self.path.clone(),
                what: format!("reading messages: {what}"),
            });
        }
        Ok((buf, msgs))
    }

    /// Receive times of the messages of `topics`, unsorted: one walk of the table.
    pub(crate) fn topic_times(&self, topics: &[i64], out: &mut Vec<u64>) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let list = topics
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.with_db(|db| {
            let mut st = db.prepare(&format!(
                "SELECT timestamp FROM messages WHERE topic_id IN ({list})"
            ))?;
            let rows = st.query_map([], |r| r.get::<_, i64>(0))?;
            for r in rows {
                out.push(r?.max(0) as u64);
            }
            Ok(())
        })
    }
}

static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
