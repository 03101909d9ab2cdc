//! Reading ROS1 bags (format 2.0): the file and its records, the index, and chunk reading.

pub mod chunk_reader;
pub mod file;
pub mod index;
pub mod record;

pub use file::{BagFile, BagHeader};
pub use index::{BagIndex, ChunkCompression, ChunkInfo, Connection, IndexEntry};
