//! Reading ROS1 bags (format 2.0): the file and its records, the index, and chunk reading;
//! and the project's own bag writer (tests, demo, repaired copies).

pub mod chunk_reader;
pub mod file;
pub mod index;
pub mod record;
pub mod recover;
pub mod writer;

pub use file::{BagFile, BagHeader};
pub use index::{BagIndex, ChunkCompression, ChunkInfo, Connection, IndexEntry, ScanEntry};
pub use recover::{RecoveryNote, RecoveryReason};
